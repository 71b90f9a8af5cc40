/* Cortex-M startup for MPS2: the vector table; the rest is cortexm_start(). */
#include <stdint.h>
#include "cmsdk.h"
#include "mcu_util.h"

void UART0RX_Handler(void);

__attribute__((used, section(".isr_vector"))) const vector_fn vector_table[16 + 32] = {
    CORTEXM_CORE_VECTORS,
    [16 + UART0_RX_IRQn] = UART0RX_Handler,
    [16 + 1] = Default_Handler, [16 + 2] = Default_Handler, [16 + 3] = Default_Handler,
};

void Reset_Handler(void) { cortexm_start(); }
