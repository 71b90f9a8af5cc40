/* Cortex-M4F startup for STM32F4: vector table (USART interrupts of the instances the
 * family supports), VTOR, FPU enable, .data/.bss init, then mcu_main(). The clock tree
 * is left at its reset state (16 MHz HSI, no PLL): no flash wait states needed. */
#include <stdint.h>
#include "stm32f4.h"
#include "mcu_util.h"

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _estack[];
int mcu_main(void);
void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void SysTick_Handler(void);
void USART_IRQHandler(void);
void board_exit(int code);

void Default_Handler(void) {
    for (;;) __asm volatile("wfi");
}
void HardFault_Handler(void) { board_exit(0x7F); }

#define NUM_IRQ 97u /* STM32F446: 97 (F405: 82) */
typedef void (*vector_fn)(void);
__attribute__((used, section(".isr_vector"))) const vector_fn stm32_vectors[16 + NUM_IRQ] = {
    (vector_fn)(uintptr_t)_estack, Reset_Handler, Default_Handler /* NMI */, HardFault_Handler,
    HardFault_Handler /* MemManage */, HardFault_Handler /* BusFault */, HardFault_Handler /* UsageFault */,
    0, 0, 0, 0, Default_Handler /* SVC */, Default_Handler /* DebugMon */, 0,
    Default_Handler /* PendSV */, SysTick_Handler,
    [16 + USART_IRQn] = USART_IRQHandler, /* only the link's USART interrupt is enabled */
};

void Reset_Handler(void) {
    uint32_t *s, *d;
    SCB_VTOR = (uint32_t)(uintptr_t)stm32_vectors; /* flash at 0x08000000 (aliased at 0 on boot) */
#if defined(__ARM_FP)
    SCB_CPACR |= 0xFu << 20; /* CP10, CP11 full access */
    __asm volatile("dsb\n isb");
#endif
    for (s = _sidata, d = _sdata; d < _edata;) *d++ = *s++;
    for (d = _sbss; d < _ebss;) *d++ = 0;
    mcu_main();
    board_exit(0);
}
