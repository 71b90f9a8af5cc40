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
