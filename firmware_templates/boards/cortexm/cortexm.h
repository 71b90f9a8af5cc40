/* Cortex-M core pieces shared by every cross-compiled board family (mps2, stm32f4):
 * core registers (SysTick, SCB, NVIC, DWT), interrupt masking, semihosting calls, and
 * the SysTick counter. Vendor peripherals stay in each family's own header. */
#ifndef MCU_CORTEXM_H
#define MCU_CORTEXM_H
#include <stdint.h>

#define REG32(a) (*(volatile uint32_t *)(a))

#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)
#define SCB_ICSR REG32(0xE000ED04u)
#define SCB_VTOR REG32(0xE000ED08u)
#define SCB_AIRCR REG32(0xE000ED0Cu)
#define SCB_CPACR REG32(0xE000ED88u)
#define ICSR_PENDSTSET (1u << 26)
#define NVIC_ISER(i) REG32(0xE000E100u + 4u * (uint32_t)(i))
#define NVIC_ICER(i) REG32(0xE000E180u + 4u * (uint32_t)(i))
#define NVIC_ISER0 NVIC_ISER(0)
#define DEMCR REG32(0xE000EDFCu)
#define DWT_CTRL REG32(0xE0001000u)
#define DWT_CYCCNT REG32(0xE0001004u)

static inline uint32_t irq_save(void) {
    uint32_t p;
    __asm volatile("mrs %0, primask\n cpsid i" : "=r"(p)::"memory");
    return p;
}
static inline void irq_restore(uint32_t p) { __asm volatile("msr primask, %0" ::"r"(p) : "memory"); }

/* Semihosting call (test builds only: without QEMU -semihosting or a debugger serving
 * it, BKPT 0xAB faults). */
static inline uint32_t cortexm_semihost(uint32_t op, const void *arg) {
    register uint32_t r0 __asm("r0") = op;
    register const void *r1 __asm("r1") = arg;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* Startup (cortexm.c): a family's Reset_Handler does its own early setup (e.g. VTOR)
 * and calls cortexm_start(): FPU on, .data/.bss initialised, mcu_main(), board_exit(). */
void cortexm_start(void);
void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void SysTick_Handler(void);
typedef void (*vector_fn)(void);
extern uint32_t _estack[];
/* The 16 core entries of a vector table; the family appends its IRQs. */
#define CORTEXM_CORE_VECTORS                                                                  \
    (vector_fn)(uintptr_t)_estack, Reset_Handler, Default_Handler /* NMI */, HardFault_Handler, \
        HardFault_Handler /* MemManage */, HardFault_Handler /* BusFault */,                  \
        HardFault_Handler /* UsageFault */, 0, 0, 0, 0, Default_Handler /* SVC */,            \
        Default_Handler /* DebugMon */, 0, Default_Handler /* PendSV */, SysTick_Handler

/* SysTick as a free-running 64-bit counter at the processor clock (cortexm.c). */
void cortexm_systick_start(void);
uint64_t cortexm_systick_count(void);
#endif
