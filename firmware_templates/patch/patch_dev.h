/* Device side of partial weight patches (issue #6): the weight area, A/B slots,
 * commit records, staging and apply. Layout and on-flash formats: docs/patch-device.md.
 *
 * The weight area (one page-aligned array, section .mcu_wflash) is generated per
 * firmware by toolchain/patch/device.py (mcu_patch_cfg.c): meta pages (commit
 * records), slot A (holding the build-time weight store), slot B, staging. */
#ifndef MCU_PATCH_DEV_H
#define MCU_PATCH_DEV_H
#include <stdint.h>

typedef struct {
    uint32_t offset;    /* byte offset in a slot */
    uint32_t nbytes;
    uint8_t elem_size;  /* 1 int8, 4 int32 */
    uint8_t patchable;  /* weight or bias */
    uint8_t pad[2];
} mcu_wtensor_t;

typedef struct {
    uint8_t *area;
    uint32_t area_size;
    uint32_t meta_off;      /* two pages of commit records */
    uint32_t slot_off[2];
    uint32_t slot_size;
    uint32_t stage_off;     /* one header page, then the staged patch */
    uint32_t stage_size;
    uint32_t n_tensors;
    const mcu_wtensor_t *tensors;
    const uint8_t *structure; /* 32 B structure hash */
    const uint8_t *init_hash; /* 32 B store hash of slot A as built */
    uint32_t init_seq;
    const uint8_t *key;       /* 32 B HMAC key (provisioned at build time) */
    const uint8_t *layout_id; /* 32 B: identifies this area layout + initial image */
} mcu_patch_cfg_t;

extern const mcu_patch_cfg_t mcu_patch_cfg;

/* The active weight store (a slot: tensors at mcu_patch_cfg.tensors[i].offset);
 * NULL if no slot holds a valid store. Reads are plain memory reads. */
const uint8_t *mcu_wstore(void);
const uint8_t *mcu_wstore_hash(void); /* 32 B store hash of the active slot */
uint32_t mcu_wstore_seq(void);
/* Called after a patch was committed (weak no-op; generated model code overrides it
 * to recompute anything derived from weight values). */
void mcu_model_weights_changed(void);
#endif
