/* Cortex-M4F startup for STM32L4+ (STM32L4R5): vector table (LPUART1's interrupt and
 * the NMI the flash raises on an ECC double error), VTOR, the clock tree, then
 * cortexm_start() (FPU, .data/.bss, mcu_main()). */
#include <stdint.h>
#include "stm32l4.h"
#include "mcu_util.h"
#include "board.h"

void LPUART1_IRQHandler(void);
void NMI_Handler(void);
void board_clock_init(void);

#define NUM_IRQ 95u /* STM32L4R5: IRQ 0..94 */
__attribute__((used, section(".isr_vector"))) const vector_fn stm32_vectors[16 + NUM_IRQ] = {
    /* CORTEXM_CORE_VECTORS with the family's NMI handler */
    (vector_fn)(uintptr_t)_estack, Reset_Handler, NMI_Handler, HardFault_Handler,
    HardFault_Handler /* MemManage */, HardFault_Handler /* BusFault */,
    HardFault_Handler /* UsageFault */, 0, 0, 0, 0, Default_Handler /* SVC */,
    Default_Handler /* DebugMon */, 0, Default_Handler /* PendSV */, SysTick_Handler,
    [16 + LPUART_IRQn] = LPUART1_IRQHandler, /* only the link's interrupt is enabled */
};

/* Flash ECC double error (FLASH_ECCR.ECCD) raises NMI; the patch flash backend
 * (patch/stm32/flash_stm32l4.c) reads suspicious ranges with it armed and treats a hit
 * as "not erased, not valid". Weak so a build without that backend still links. */
__attribute__((weak)) int mcu_flash_nmi(void) { return 0; }
void NMI_Handler(void) {
    if (!mcu_flash_nmi()) board_exit(0x7E);
}

void Reset_Handler(void) {
    SCB_VTOR = (uint32_t)(uintptr_t)stm32_vectors; /* flash at 0x08000000 */
    board_clock_init();
    cortexm_start();
}
