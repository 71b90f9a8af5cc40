/* CMSDK APB UART0: interrupt-driven RX into a ring (never drops: when the ring
 * is full the RX interrupt is masked and the UART holds the byte), polled TX. */
#include "cmsdk.h"
#include "board.h"

#define RING 256u
static volatile uint8_t ring[RING];
static volatile uint32_t head, tail; /* head: ISR writes, tail: thread reads */
static volatile uint8_t stalled;

void UART0RX_Handler(void) {
    while ((UART_STATE & UART_STATE_RXFULL) && head - tail < RING) {
        ring[head % RING] = (uint8_t)UART_DATA;
        head++;
    }
    UART_INTSTATUS = UART_INT_RX;
    if (head - tail >= RING) {
        UART_CTRL &= ~UART_CTRL_RXINTEN;
        stalled = 1;
    }
}

void board_uart_init(void) {
    UART_BAUDDIV = MCU_CPU_HZ / MCU_UART_BAUD;
    UART_CTRL = UART_CTRL_TXEN | UART_CTRL_RXEN | UART_CTRL_RXINTEN;
    /* Boot race (REFERENCE §1): read DATA once after RXEN, or QEMU may never
     * deliver the first host bytes. */
    (void)UART_DATA;
    UART_INTSTATUS = UART_INT_RX;
    NVIC_ISER0 = 1u << UART0_RX_IRQn;
}

uint8_t board_uart_getc(void) {
    for (;;) {
        uint32_t p = irq_save();
        if (head != tail) {
            uint8_t c = ring[tail % RING];
            tail++;
            if (stalled) {
                stalled = 0;
                UART_CTRL |= UART_CTRL_RXINTEN;
            }
            irq_restore(p);
            return c;
        }
        if (UART_STATE & UART_STATE_RXFULL) { /* e.g. arrived while RX interrupts were masked */
            uint8_t c = (uint8_t)UART_DATA;
            irq_restore(p);
            return c;
        }
        /* Sleep until an interrupt is pending (taken once PRIMASK is restored). */
        __asm volatile("wfi");
        irq_restore(p);
    }
}

void board_uart_write(const uint8_t *d, uint32_t n) {
    while (n--) {
        while (UART_STATE & UART_STATE_TXFULL) {
        }
        UART_DATA = *d++;
    }
}

void board_uart_flush(void) {
    while (UART_STATE & UART_STATE_TXFULL) {
    }
}
