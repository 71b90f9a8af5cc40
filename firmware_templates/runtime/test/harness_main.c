/* Kernel test harness: runs the generated cases (vectors.c), compares with
 * the expected bytes on the device, prints one line per kernel call:
 *   R <case> <variant> <ticks> <mismatches>
 * and exits with the total mismatch count (capped at 250). */
#include <stdint.h>
#include "harness.h"

extern int32_t harness_run_cases(void);

static char *fmt_u32(char *p, uint32_t v)
{
    char tmp[11];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

void harness_report(const char *name, const char *variant, uint32_t ticks, int32_t bad)
{
    char line[128];
    char *p = line;
    *p++ = 'R';
    *p++ = ' ';
    while (*name && p < line + 60) *p++ = *name++;
    *p++ = ' ';
    while (*variant && p < line + 90) *p++ = *variant++;
    *p++ = ' ';
    p = fmt_u32(p, ticks);
    *p++ = ' ';
    p = fmt_u32(p, (uint32_t)bad);
    *p++ = '\n';
    *p = 0;
    harness_puts(line);
}

int32_t harness_compare(const int8_t *a, const int8_t *b, int32_t n)
{
    int32_t bad = 0;
    for (int32_t i = 0; i < n; i++) bad += a[i] != b[i];
    return bad;
}

void harness_fill(int8_t *a, int32_t n, int8_t v)
{
    for (int32_t i = 0; i < n; i++) a[i] = v;
}

int main(void)
{
    int32_t bad = harness_run_cases();
    harness_puts(bad ? "FAIL\n" : "PASS\n");
    return bad > 250 ? 250 : bad;
}
