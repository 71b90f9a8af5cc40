/* Cortex-M startup for MPS2: vector table, .data/.bss init, FPU enable, then mcu_main(). */
#include <stdint.h>
#include "cmsdk.h"
#include "mcu_util.h"

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _estack[];
int mcu_main(void);
void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void SysTick_Handler(void);
void UART0RX_Handler(void);
void board_exit(int code);

void Default_Handler(void) {
    for (;;) __asm volatile("wfi");
}
void HardFault_Handler(void) { board_exit(0x7F); }

typedef void (*vector_fn)(void);
__attribute__((used, section(".isr_vector"))) const vector_fn vector_table[16 + 32] = {
    (vector_fn)(uintptr_t)_estack, Reset_Handler, Default_Handler /* NMI */, HardFault_Handler,
    HardFault_Handler /* MemManage */, HardFault_Handler /* BusFault */, HardFault_Handler /* UsageFault */,
    0, 0, 0, 0, Default_Handler /* SVC */, Default_Handler /* DebugMon */, 0,
    Default_Handler /* PendSV */, SysTick_Handler,
    [16 + UART0_RX_IRQn] = UART0RX_Handler,
    [16 + 1] = Default_Handler, [16 + 2] = Default_Handler, [16 + 3] = Default_Handler,
};

void Reset_Handler(void) {
    uint32_t *s, *d;
#if defined(__ARM_FP)
    SCB_CPACR |= 0xFu << 20; /* CP10, CP11 full access */
    __asm volatile("dsb\n isb");
#endif
    for (s = _sidata, d = _sdata; d < _edata;) *d++ = *s++;
    for (d = _sbss; d < _ebss;) *d++ = 0;
    mcu_main();
    board_exit(0);
}
