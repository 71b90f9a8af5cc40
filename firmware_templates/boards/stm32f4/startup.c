/* Cortex-M4F startup for STM32F4: vector table (the link USART's interrupt), VTOR,
 * then cortexm_start() (FPU, .data/.bss, mcu_main()). The clock tree is left at its
 * reset state (16 MHz HSI, no PLL): no flash wait states needed. */
#include <stdint.h>
#include "stm32f4.h"
#include "mcu_util.h"

void USART_IRQHandler(void);

#define NUM_IRQ 97u /* STM32F446: 97 (F405: 82) */
__attribute__((used, section(".isr_vector"))) const vector_fn stm32_vectors[16 + NUM_IRQ] = {
    CORTEXM_CORE_VECTORS,
    [16 + USART_IRQn] = USART_IRQHandler, /* only the link's USART interrupt is enabled */
};

void Reset_Handler(void) {
    SCB_VTOR = (uint32_t)(uintptr_t)stm32_vectors; /* flash at 0x08000000 (aliased at 0 on boot) */
    cortexm_start();
}
