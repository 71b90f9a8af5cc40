/* LPUART1 of the STM32L4+ for the host link (on the NUCLEO-L4R5ZI: PG7 TX / PG8 RX,
 * AF8, the ST-LINK virtual COM port): interrupt-driven RX into a ring that never drops
 * (full: RXNEIE off and the NVIC line masked; the byte waits in RDR), polled TX.
 * Kernel clock PCLK1 = 120 MHz. Port G needs VDDIO2 declared valid first. */
#include "stm32l4.h"
#include "board.h"

#define RING 256u
static volatile uint8_t ring[RING];
static volatile uint32_t head, tail;
static volatile uint8_t stalled;

static void rx_irq_off(void) {
    UART_CR1 &= ~UART_CR1_RXNEIE;
    NVIC_ICER(LPUART_IRQn / 32u) = 1u << (LPUART_IRQn % 32u);
    stalled = 1;
}

void LPUART1_IRQHandler(void) {
    uint32_t isr;
    while (((isr = UART_ISR) & (UART_ISR_RXNE | UART_ISR_ORE)) && head - tail < RING) {
        if (isr & UART_ISR_ORE) UART_ICR = UART_ICR_ORECF;
        if (!(isr & UART_ISR_RXNE)) continue;
        ring[head % RING] = (uint8_t)UART_RDR; /* reading RDR clears RXNE */
        head++;
    }
    if (head - tail >= RING) rx_irq_off();
}

static void pin_af(uint32_t port, uint32_t pin, uint32_t af) {
    GPIO_MODER(port) = (GPIO_MODER(port) & ~(3u << (2u * pin))) | (2u << (2u * pin));
    GPIO_OSPEEDR(port) |= 2u << (2u * pin);
    GPIO_PUPDR(port) = (GPIO_PUPDR(port) & ~(3u << (2u * pin))) | (1u << (2u * pin));
    GPIO_AFR(port, pin / 8u) = (GPIO_AFR(port, pin / 8u) & ~(0xFu << (4u * (pin % 8u)))) |
                               (af << (4u * (pin % 8u)));
}

void board_uart_init(void) {
#if STM32_VDDIO2
    RCC_APB1ENR1 |= RCC_APB1ENR1_PWREN;
    (void)RCC_APB1ENR1;
    PWR_CR2 |= PWR_CR2_IOSV; /* PG2..PG15 are supplied by VDDIO2 */
#endif
    RCC_AHB2ENR |= 1u << STM32_UART_PORT; /* GPIOxEN */
    RCC_APB1ENR2 |= RCC_APB1ENR2_LPUART1EN;
    RCC_CCIPR &= ~(3u << RCC_CCIPR_LPUART1SEL_SHIFT); /* kernel clock PCLK1 */
    (void)RCC_APB1ENR2;
    pin_af(STM32_UART_PORT, STM32_UART_TX_PIN, STM32_UART_AF);
    pin_af(STM32_UART_PORT, STM32_UART_RX_PIN, STM32_UART_AF);
    UART_CR1 = 0;
    UART_CR2 = 0;
    UART_CR3 = 0;
    UART_BRR = L4_LPUART_BRR(MCU_CPU_HZ, MCU_UART_BAUD); /* 266667 at 120 MHz, 115200 */
    UART_CR1 = UART_CR1_UE | UART_CR1_TE | UART_CR1_RE | UART_CR1_RXNEIE;
    NVIC_ISER(LPUART_IRQn / 32u) = 1u << (LPUART_IRQn % 32u);
    UART_TDR = 0x00u; /* ready mark: a frame delimiter (resynchronises the host reader) */
}

uint8_t board_uart_getc(void) {
    for (;;) {
        uint32_t p = irq_save();
        if (head != tail) {
            uint8_t c = ring[tail % RING];
            tail++;
            if (stalled) {
                stalled = 0;
                UART_CR1 |= UART_CR1_RXNEIE;
                NVIC_ISER(LPUART_IRQn / 32u) = 1u << (LPUART_IRQn % 32u);
            }
            irq_restore(p);
            return c;
        }
        if (UART_ISR & UART_ISR_RXNE) {
            uint8_t c = (uint8_t)UART_RDR;
            irq_restore(p);
            return c;
        }
        __asm volatile("wfi");
        irq_restore(p);
    }
}

void board_uart_write(const uint8_t *d, uint32_t n) {
    while (n--) {
        while (!(UART_ISR & UART_ISR_TXE)) {
        }
        UART_TDR = *d++;
    }
}

void board_uart_flush(void) {
    while (!(UART_ISR & UART_ISR_TC)) {
    }
}
