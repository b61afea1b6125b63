/* tests/run.sh PATTERN runs only the cmocka cases named like PATTERN: it sets CMOCKA_TEST_FILTER
 * (a cmocka glob, e.g. "*roundtrip*"), which each test's main hands to cmocka before running. */
#ifndef SHARDLORA_TEST_FILTER_H
#define SHARDLORA_TEST_FILTER_H

#include <stdlib.h>

static inline void test_filter_from_env(void)
{
    const char *filter = getenv("CMOCKA_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
}

#endif
