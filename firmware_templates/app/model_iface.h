/* The model interface the app uses. app/model_none.c gives weak "no model"
 * definitions; generated model code (toolchain/codegen) provides strong ones that
 * override them. Layer k = op k of the IR graph (its execution position may differ). */
#ifndef MCU_MODEL_IFACE_H
#define MCU_MODEL_IFACE_H
#include <stdint.h>

/* Model hash (e.g. sha256 of the deployed int8 model); NULL when there is no model. */
const uint8_t *model_hash(void);
uint32_t model_hash_len(void);
const char *model_name(void);
uint32_t model_input_size(void);   /* bytes */
uint32_t model_output_size(void);  /* bytes */
uint8_t *model_input(void);        /* input buffer of model_input_size() bytes, or NULL */
const uint8_t *model_output(void); /* output buffer of model_output_size() bytes, or NULL */
/* Run one inference; returns an MCU_ST_* status (MCU_ST_NO_MODEL without a model). */
uint8_t model_invoke(void);

/* ---- extended interface (model messages 0x20-0x3F, handlers_model.c) ---- */
/* Run layers in execution order until layer k has run (k < 0: all). The input
 * buffer may be overwritten by intermediates (the arena is shared): set it again
 * before the next run. */
uint8_t model_invoke_until(int32_t k);
uint32_t model_num_layers(void);
const char *model_layer_name(uint32_t k);      /* "OP_TYPE name" */
/* Counts of the last run, in model_count_unit(): 0 ticks, 1 instructions
 * (QEMU -icount: SysTick ticks x MCU_INSTR_PER_TICK), 2 cycles (DWT), 3 ns. */
uint64_t model_layer_count(uint32_t k);
uint64_t model_last_count(void);
uint8_t model_count_unit(void);
/* Layer k's output tensor in the arena (valid right after model_invoke_until(k)). */
const uint8_t *model_layer_output(uint32_t k, uint32_t *size);
/* MODEL_INFO payload (docs/protocol.md), generated with the model. */
const uint8_t *model_desc(uint32_t *len);
uint32_t model_arena_size(void);

/* ---- switchable subnet levels (issue #10; models built from a subnet export) ----
 * model_num_levels() is 0 for an ordinary model. model_set_level(k) selects level k
 * for the following runs (pointer stores only: no flash write, nothing recomputed;
 * MCU_ST_BAD_ARG and nothing changed when k is out of range); it holds until changed
 * (a reset selects level 0). Sparsity of level k in 1/10000. */
uint32_t model_num_levels(void);
uint32_t model_level(void);
uint8_t model_set_level(uint32_t k);
uint16_t model_level_sparsity(uint32_t k);
#endif
