/* Cortex-M4F startup for the nRF52840: vector table (UARTE0 and TIMER1 interrupts),
 * VTOR, then cortexm_start() (FPU, .data/.bss, mcu_main()). The core runs at 64 MHz
 * from reset; board_init() starts the crystal oscillator for the peripherals. */
#include <stdint.h>
#include "nrf52.h"
#include "mcu_util.h"

void UARTE0_IRQHandler(void);
void TIMER1_IRQHandler(void);

#define NUM_IRQ 48u /* nRF52840: IRQ 0..47 */
__attribute__((used, section(".isr_vector"))) const vector_fn nrf_vectors[16 + NUM_IRQ] = {
    CORTEXM_CORE_VECTORS,
    [16 + UARTE_IRQn] = UARTE0_IRQHandler,
    [16 + TIMER_IRQn] = TIMER1_IRQHandler,
};

void Reset_Handler(void) {
    SCB_VTOR = (uint32_t)(uintptr_t)nrf_vectors; /* flash at 0x00000000 */
    cortexm_start();
}
