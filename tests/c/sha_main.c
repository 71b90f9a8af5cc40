/* Test driver for firmware_templates/patch/sha256.c on the host: reads lines
 * "KEYHEX MSGHEX" ("-" = empty) and prints "SHA256(MSG) HMAC(KEY, MSG)" in hex. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sha256.h"

static size_t unhex(const char *s, unsigned char *out) {
    size_t n = 0;
    if (strcmp(s, "-") == 0) return 0;
    while (s[0] && s[1]) {
        unsigned v;
        sscanf(s, "%2x", &v);
        out[n++] = (unsigned char)v;
        s += 2;
    }
    return n;
}

int main(void) {
    static char kh[4096], mh[1 << 20];
    static unsigned char k[2048], m[1 << 19];
    while (scanf("%4095s %1048575s", kh, mh) == 2) {
        size_t kn = unhex(kh, k), mn = unhex(mh, m), i, split;
        unsigned char h[32], t[32];
        mcu_sha256_t c;
        mcu_hmac_t hc;
        /* hash in two uneven parts to exercise the buffering */
        split = mn / 3;
        mcu_sha256_init(&c);
        mcu_sha256_update(&c, m, split);
        mcu_sha256_update(&c, m + split, mn - split);
        mcu_sha256_final(&c, h);
        mcu_hmac_init(&hc, k, kn);
        mcu_hmac_update(&hc, m, split);
        mcu_hmac_update(&hc, m + split, mn - split);
        mcu_hmac_final(&hc, t);
        for (i = 0; i < 32; i++) printf("%02x", h[i]);
        printf(" ");
        for (i = 0; i < 32; i++) printf("%02x", t[i]);
        printf("\n");
    }
    return 0;
}
