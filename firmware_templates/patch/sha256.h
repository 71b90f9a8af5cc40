/* SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104): small, no tables beyond K. */
#ifndef MCU_SHA256_H
#define MCU_SHA256_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len; /* bytes hashed */
    uint8_t buf[64];
    uint32_t nbuf;
} mcu_sha256_t;

void mcu_sha256_init(mcu_sha256_t *c);
void mcu_sha256_update(mcu_sha256_t *c, const void *data, size_t n);
void mcu_sha256_final(mcu_sha256_t *c, uint8_t out[32]);
void mcu_sha256(const void *data, size_t n, uint8_t out[32]);

typedef struct {
    mcu_sha256_t inner;
    uint8_t okey[64];
} mcu_hmac_t;

void mcu_hmac_init(mcu_hmac_t *c, const uint8_t *key, size_t keylen);
void mcu_hmac_update(mcu_hmac_t *c, const void *data, size_t n);
void mcu_hmac_final(mcu_hmac_t *c, uint8_t out[32]);
/* Constant-time comparison: 1 if equal. */
int mcu_ct_equal(const uint8_t *a, const uint8_t *b, size_t n);
#endif
