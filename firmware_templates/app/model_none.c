/* Weak "no model" implementation of model_iface.h. */
#include "mcu_proto.h"
#include "model_iface.h"

__attribute__((weak)) const uint8_t *model_hash(void) { return 0; }
__attribute__((weak)) uint32_t model_hash_len(void) { return 0; }
__attribute__((weak)) const char *model_name(void) { return ""; }
__attribute__((weak)) uint32_t model_input_size(void) { return 0; }
__attribute__((weak)) uint32_t model_output_size(void) { return 0; }
__attribute__((weak)) uint8_t *model_input(void) { return 0; }
__attribute__((weak)) const uint8_t *model_output(void) { return 0; }
__attribute__((weak)) uint8_t model_invoke(void) { return MCU_ST_NO_MODEL; }
__attribute__((weak)) uint8_t model_invoke_until(int32_t k) { (void)k; return MCU_ST_NO_MODEL; }
__attribute__((weak)) uint32_t model_num_layers(void) { return 0; }
__attribute__((weak)) const char *model_layer_name(uint32_t k) { (void)k; return ""; }
__attribute__((weak)) uint64_t model_layer_count(uint32_t k) { (void)k; return 0; }
__attribute__((weak)) uint64_t model_last_count(void) { return 0; }
__attribute__((weak)) uint8_t model_count_unit(void) { return 0; }
__attribute__((weak)) const uint8_t *model_layer_output(uint32_t k, uint32_t *size) {
    (void)k;
    *size = 0;
    return 0;
}
__attribute__((weak)) const uint8_t *model_desc(uint32_t *len) { *len = 0; return 0; }
__attribute__((weak)) uint32_t model_arena_size(void) { return 0; }
__attribute__((weak)) uint32_t model_num_levels(void) { return 0; }
__attribute__((weak)) uint32_t model_level(void) { return 0; }
__attribute__((weak)) uint8_t model_set_level(uint32_t k) { (void)k; return MCU_ST_UNSUPPORTED; }
__attribute__((weak)) uint16_t model_level_sparsity(uint32_t k) { (void)k; return 0; }
