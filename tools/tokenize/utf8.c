/* utf8: validation by the well-formed byte sequences of the Unicode standard (table 3-7). */
#include "utf8.h"

#include <string.h>

/* The range of the second byte after a lead byte; later continuation bytes are 0x80..0xBF. */
static int second_ok(unsigned char lead, unsigned char b)
{
    if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
    if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
    if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
    if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
    return b >= 0x80 && b <= 0xBF;
}

static int expected_len(unsigned char lead)
{
    if (lead < 0x80) return 1;
    if (lead >= 0xC2 && lead <= 0xDF) return 2;
    if (lead >= 0xE0 && lead <= 0xEF) return 3;
    if (lead >= 0xF0 && lead <= 0xF4) return 4;
    return 0;
}

/* How many bytes of the sequence at s are well formed so far (at least 1 for the lead). */
static int well_formed_prefix(const unsigned char *s, size_t avail, int want)
{
    int k = 1;
    while (k < want && (size_t)k < avail && (k == 1 ? second_ok(s[0], s[1]) : (s[k] & 0xC0) == 0x80)) k++;
    return k;
}

int utf8_group_len(const char *s, int64_t avail)
{
    int n = 1;
    while (n < 4 && n < avail && ((uint8_t)s[n] & 0xC0) == 0x80) n++;
    return n;
}

int utf8_valid_len(const unsigned char *s, size_t avail)
{
    int want = expected_len(s[0]);
    if (want <= 1) return want;
    return well_formed_prefix(s, avail, want) == want ? want : 0;
}

size_t utf8_sanitize(const char *in, size_t len, char *out)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x80) {
            out[o++] = (char)s[i++];
            continue;
        }
        int n = utf8_valid_len(s + i, len - i);
        if (n > 0) {
            memcpy(out + o, s + i, (size_t)n);
            o += (size_t)n, i += (size_t)n;
            continue;
        }
        int want = expected_len(s[i]);
        i += want ? (size_t)well_formed_prefix(s + i, len - i, want) : 1;
        memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3;
    }
    return o;
}

uint32_t utf8_decode(const unsigned char *s, int *n)
{
    *n = expected_len(s[0]);
    if (*n <= 1) return *n = 1, s[0];
    uint32_t cp = s[0] & (0x7F >> *n);
    for (int k = 1; k < *n; k++) cp = (cp << 6) | (s[k] & 0x3F);
    return cp;
}

int utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* GPT-2 keeps the printable Latin-1 bytes as themselves and maps the others, in byte order, to
 * U+0100 onwards, so that every byte is a visible character. */
static int printable(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

uint32_t bytelevel_char(uint8_t byte)
{
    if (printable(byte)) return byte;
    uint32_t k = 0;
    for (int b = 0; b < byte; b++) k += !printable(b);
    return 256 + k;
}

int bytelevel_byte(uint32_t cp)
{
    if (cp < 256) return printable((int)cp) ? (int)cp : -1;
    uint32_t k = 0;
    for (int b = 0; b < 256; b++)
        if (!printable(b) && k++ == cp - 256) return b;
    return -1;
}
