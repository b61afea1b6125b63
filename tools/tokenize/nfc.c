/* nfc: ICU normalizes UTF-16, so the text goes there and back; ASCII is its own NFC form and is
 * copied as it is. */
#include "nfc.h"

#include <stdlib.h>
#include <string.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "runtime.h"

static void *fit(void *p, size_t *cap, size_t need)
{
    if (need <= *cap) return p;
    *cap = 2 * need;
    p = realloc(p, *cap);
    if (!p) sl_fatal("out of memory normalizing a text of %zu bytes", need);
    return p;
}

static void icu_check(UErrorCode err, const char *what)
{
    if (U_FAILURE(err)) sl_fatal("NFC normalization failed in ICU's %s: %s", what, u_errorName(err));
}

size_t nfc_normalize(const char *s, size_t n, char **out, size_t *cap)
{
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0x80) i++;
    *out = fit(*out, cap, n + 1);
    if (i == n) return memcpy(*out, s, n), n;
    UErrorCode err = U_ZERO_ERROR;
    const UNormalizer2 *nfc = unorm2_getNFCInstance(&err);
    icu_check(err, "unorm2_getNFCInstance");
    int32_t n16 = 0;
    u_strFromUTF8(NULL, 0, &n16, s, (int32_t)n, &err);
    if (err == U_BUFFER_OVERFLOW_ERROR) err = U_ZERO_ERROR;
    icu_check(err, "u_strFromUTF8");
    /* NFC of UTF-16 is at most 3 times longer (Unicode's bound for NFC) */
    UChar *src = sl_malloc((size_t)n16 * sizeof *src + 2, "NFC"), *dst = sl_malloc((size_t)(3 * n16) * sizeof *dst + 2, "NFC");
    u_strFromUTF8(src, n16, NULL, s, (int32_t)n, &err);
    icu_check(err, "u_strFromUTF8");
    int32_t m = unorm2_normalize(nfc, src, n16, dst, 3 * n16 + 1, &err);
    icu_check(err, "unorm2_normalize");
    int32_t n8 = 0;
    u_strToUTF8(NULL, 0, &n8, dst, m, &err);
    if (err == U_BUFFER_OVERFLOW_ERROR) err = U_ZERO_ERROR;
    icu_check(err, "u_strToUTF8");
    *out = fit(*out, cap, (size_t)n8 + 1);
    u_strToUTF8(*out, n8 + 1, NULL, dst, m, &err);
    icu_check(err, "u_strToUTF8");
    free(src);
    free(dst);
    return (size_t)n8;
}
