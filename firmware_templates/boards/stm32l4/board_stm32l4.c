/* STM32L4+ board layer: the clock tree to 120 MHz, init (DWT cycle counter when the
 * board TOML sets [timing] counter = "dwt") and the tick counter; the rest is in
 * boards/cortexm. */
#include "stm32l4.h"
#include "board.h"

void board_uart_init(void);
void board_clock_init(void);

#define L4_PLLCFGR (RCC_PLLCFGR_SRC_MSI | ((L4_PLLM - 1u) << 4) | (L4_PLLN << 8) | \
                    (((L4_PLLR / 2u) - 1u) << 25) | RCC_PLLCFGR_PLLREN)

/* The clock and pin configuration as built, for checks from the ELF (the suite reads
 * this table: tests/test_l4_nrf_boards.py): SYSCLK, PLLCFGR, flash wait states,
 * LPUART1 BRR, GPIO port, TX pin, RX pin, alternate function. */
__attribute__((used, section(".mcu_facts"))) const uint32_t mcu_board_facts[8] = {
    L4_SYSCLK_HZ, L4_PLLCFGR, L4_FLASH_LATENCY, L4_LPUART_BRR(MCU_CPU_HZ, MCU_UART_BAUD),
    STM32_UART_PORT, STM32_UART_TX_PIN, STM32_UART_RX_PIN, STM32_UART_AF};
#if L4_SYSCLK_HZ != MCU_CPU_HZ
#error "[timing] cpu_hz of the board differs from the PLL configuration (L4_SYSCLK_HZ)"
#endif

/* MSI 4 MHz -> PLL (M 1, N 60, R 2) -> SYSCLK 120 MHz, AHB/APB1/APB2 at 120 MHz.
 * Above 80 MHz the core needs voltage range 1 in boost mode (PWR_CR5.R1MODE = 0) and
 * 5 flash wait states, both set before the switch; going from <= 80 MHz to > 80 MHz
 * the AHB clock is first divided by 2 for at least 1 us (RM0432 "Range 1 boost mode"). */
void board_clock_init(void) {
    volatile uint32_t i;
    RCC_APB1ENR1 |= RCC_APB1ENR1_PWREN;
    (void)RCC_APB1ENR1;
    PWR_CR1 = (PWR_CR1 & ~PWR_CR1_VOS_MASK) | PWR_CR1_VOS_RANGE1;
    while (PWR_SR2 & PWR_SR2_VOSF) {
    }
    PWR_CR5 &= ~PWR_CR5_R1MODE; /* range 1 boost */
    FLASH_ACR = (FLASH_ACR & ~FLASH_ACR_LATENCY_MASK) | L4_FLASH_LATENCY | FLASH_ACR_PRFTEN |
                FLASH_ACR_ICEN | FLASH_ACR_DCEN;
    while ((FLASH_ACR & FLASH_ACR_LATENCY_MASK) != L4_FLASH_LATENCY) {
    }
    RCC_CR &= ~RCC_CR_PLLON;
    while (RCC_CR & RCC_CR_PLLRDY) {
    }
    RCC_PLLCFGR = L4_PLLCFGR;
    RCC_CR |= RCC_CR_PLLON;
    while (!(RCC_CR & RCC_CR_PLLRDY)) {
    }
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_HPRE_MASK) | RCC_CFGR_HPRE_DIV2;
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_PLL;
    while (((RCC_CFGR >> RCC_CFGR_SWS_SHIFT) & 3u) != RCC_CFGR_SW_PLL) {
    }
    for (i = 0; i < 200u; i++) { /* > 1 us at 60 MHz */
    }
    RCC_CFGR &= ~RCC_CFGR_HPRE_MASK; /* AHB /1: 120 MHz */
}

void board_init(void) {
    board_uart_init();
    cortexm_systick_start();
#if defined(MCU_TIMER_DWT)
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;    /* CYCCNTENA */
#endif
    __asm volatile("cpsie i");
}

uint64_t board_ticks(void) {
    uint64_t t = cortexm_systick_count();
#if MCU_TICK_HZ != 0 && MCU_TICK_HZ != MCU_CPU_HZ
    return (t / MCU_CPU_HZ) * MCU_TICK_HZ + (t % MCU_CPU_HZ) * MCU_TICK_HZ / MCU_CPU_HZ;
#else
    return t;
#endif
}
