/* Debug/test messages (0x60-0x7F): a scratch stream for link tests and a
 * non-idempotent counter that proves retries are not executed twice. */
#include "mcu_proto.h"
#include "mcu_util.h"

#ifndef MCU_SCRATCH_SIZE
#define MCU_SCRATCH_SIZE 8192u
#endif

static uint8_t scratch[MCU_SCRATCH_SIZE];
static uint32_t scratch_len;

static uint8_t scratch_begin(uint32_t total) {
    if (total > MCU_SCRATCH_SIZE) return MCU_ST_TOO_LARGE;
    scratch_len = 0;
    return MCU_ST_OK;
}
static uint8_t scratch_write(uint32_t off, const uint8_t *d, uint32_t n) {
    memcpy(scratch + off, d, n);
    return MCU_ST_OK;
}
static uint8_t scratch_end(uint32_t total) {
    scratch_len = total;
    return MCU_ST_OK;
}
static uint32_t scratch_size(void) { return scratch_len; }
static uint8_t scratch_read(uint32_t off, uint8_t *d, uint32_t n) {
    memcpy(d, scratch + off, n);
    return MCU_ST_OK;
}
MCU_STREAM(scratch) = {scratch_begin, scratch_write, scratch_end, scratch_size, scratch_read,
                       MCU_MSG_DEBUG_SCRATCH, 0u};

static uint32_t counter;
static uint8_t on_counter(const mcu_msg_t *req, mcu_reply_t *rep) {
    (void)req;
    counter++;
    mcu_put_u32(rep->data, counter);
    rep->len = 4;
    return MCU_ST_OK;
}
MCU_HANDLER(MCU_MSG_DEBUG_COUNTER, on_counter);
