/* nRF52840 board layer: HFXO, UARTE0 link, TIMER1 as the 64-bit tick counter
 * (16 MHz, MCU_TICK_HZ), the DWT cycle counter when [timing] counter = "dwt". */
#include "nrf52.h"
#include "board.h"

void board_uart_init(void);

static volatile uint32_t timer_wraps;

/* The clock and pin configuration as built, for checks from the ELF
 * (tests/test_l4_nrf_boards.py): core clock, tick rate, UARTE BAUDRATE value, TX pin,
 * RX pin. */
__attribute__((used, section(".mcu_facts"))) const uint32_t mcu_board_facts[5] = {
    MCU_CPU_HZ, NRF_TIMER_HZ, UARTE_BAUD_115200, NRF_UART_TX_PIN, NRF_UART_RX_PIN};
#if MCU_TICK_HZ != NRF_TIMER_HZ
#error "[timing] tick_hz of the board differs from TIMER1's rate (NRF_TIMER_HZ)"
#endif
#if MCU_UART_BAUD != 115200
#error "the UARTE driver sets 115200 baud only ([serial] baudrate)"
#endif

void TIMER1_IRQHandler(void) {
    if (TIMER_EVENTS_COMPARE1) {
        TIMER_EVENTS_COMPARE1 = 0;
        (void)TIMER_EVENTS_COMPARE1; /* the write lands before the handler returns */
        timer_wraps++;
    }
}

void board_init(void) {
    CLOCK_EVENTS_HFCLKSTARTED = 0;
    CLOCK_TASKS_HFCLKSTART = 1;
    while (!CLOCK_EVENTS_HFCLKSTARTED) {
    }
    board_uart_init();
    TIMER_MODE = 0;      /* timer */
    TIMER_BITMODE = 3;   /* 32 bit */
    TIMER_PRESCALER = 0; /* 16 MHz */
    TIMER_CC1 = 0;       /* compare at 0: once per wrap */
    TIMER_INTENSET = TIMER_INT_COMPARE1;
    NVIC_ISER(TIMER_IRQn / 32u) = 1u << (TIMER_IRQn % 32u);
    TIMER_TASKS_CLEAR = 1;
    TIMER_TASKS_START = 1;
#if defined(MCU_TIMER_DWT)
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;    /* CYCCNTENA */
#endif
    __asm volatile("cpsie i");
}

uint64_t board_ticks(void) {
    uint32_t p = irq_save();
    uint32_t hi = timer_wraps, v;
    TIMER_TASKS_CAPTURE0 = 1;
    v = TIMER_CC0;
    if (TIMER_EVENTS_COMPARE1 && v < 0x80000000u) hi++; /* wrapped, handler not run yet */
    irq_restore(p);
    return ((uint64_t)hi << 32) | v;
}
