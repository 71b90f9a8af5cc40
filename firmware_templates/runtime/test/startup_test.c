/* Minimal bare-metal startup for the kernel test harness on QEMU mps2
 * (Cortex-M4 an386 / Cortex-M7 an500): vector table, .data/.bss init, FPU
 * enable, SysTick tick counter, semihosting output and exit. */
#include <stdint.h>
#include "harness.h"

extern uint32_t __stack_top, __data_load, __data_start, __data_end, __bss_start, __bss_end;
extern int main(void);

static volatile uint32_t systick_wraps;

void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);

__attribute__((section(".vectors"), used)) const void *const vector_table[16] = {
    &__stack_top, (const void *)Reset_Handler, (const void *)Default_Handler,
    (const void *)Default_Handler, (const void *)Default_Handler,
    (const void *)Default_Handler, (const void *)Default_Handler, 0, 0, 0, 0,
    (const void *)Default_Handler, (const void *)Default_Handler, 0,
    (const void *)Default_Handler, (const void *)SysTick_Handler,
};

static int32_t semihost(int32_t op, const void *arg)
{
    register int32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void harness_puts(const char *s) { semihost(0x04, s); }

void harness_exit(int32_t code)
{
    const uint32_t block[2] = {0x20026u, (uint32_t)code};
    semihost(0x20, block);
    for (;;) {
    }
}

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define CPACR (*(volatile uint32_t *)0xE000ED88u)

void SysTick_Handler(void) { systick_wraps++; }

/* Monotonic SysTick tick count (24-bit down counter + wrap interrupts). */
uint32_t harness_ticks(void)
{
    uint32_t w, v;
    do {
        w = systick_wraps;
        v = SYST_CVR;
    } while (w != systick_wraps);
    return w * 0x1000000u + (0xFFFFFFu - v);
}

void Default_Handler(void)
{
    harness_puts("FAULT\n");
    harness_exit(254);
}

void Reset_Handler(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end) *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end;) *dst++ = 0;
    CPACR |= 0xFu << 20; /* CP10/CP11 full access (FPU) */
    __asm__ volatile("dsb\n isb");
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* processor clock, interrupt, enable */
    harness_exit(main());
}

/* Helpers the compiler may call in a freestanding build. */
void *memcpy(void *d, const void *s, unsigned n)
{
    uint8_t *dd = d;
    const uint8_t *ss = s;
    while (n--) *dd++ = *ss++;
    return d;
}

void *memset(void *d, int v, unsigned n)
{
    uint8_t *dd = d;
    while (n--) *dd++ = (uint8_t)v;
    return d;
}
