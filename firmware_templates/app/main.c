/* Device main loop (mcu_main, called by the board startup code): bytes from
 * the host link go to the protocol engine, which dispatches complete,
 * CRC-checked frames to the registered handlers. */
#include "board.h"
#include "mcu_proto.h"

void mcu_core_poll(void);
int mcu_main(void);
int mcu_eembc_main(void); /* app/eembc.c: MLPerf Tiny text protocol instead (build option) */

int mcu_main(void) {
#ifdef MCU_PROTOCOL_EEMBC
    return mcu_eembc_main();
#endif
    board_init();
    mcu_proto_init();
    board_log("mcu firmware ready: " MCU_BOARD_NAME " " MCU_BUILD_ID);
    for (;;) {
        mcu_proto_rx_byte(board_uart_getc());
        mcu_core_poll();
    }
}
