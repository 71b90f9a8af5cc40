/* Device protocol v1: constants and the handler/stream registries.
 *
 * Spec: docs/protocol.md. The host end is toolchain/link/protocol.py; a test
 * checks that the numbers here and there agree.
 *
 * Frame (before COBS encoding, then terminated by one 0x00 byte on the wire):
 *   0 version  (MCU_PROTO_VERSION)
 *   1 type     (message type, ranges below)
 *   2 flags    (MCU_FLAG_*)
 *   3 status   (0 in requests; MCU_ST_* in responses)
 *   4 seq      (u16 little endian; a response carries its request's seq)
 *   6 length   (u16 little endian, payload bytes)
 *   8 payload  (length bytes)
 *   . crc32    (u32 LE, CRC-32/ISO-HDLC over bytes 0 .. 8+length-1)
 */
#ifndef MCU_PROTO_H
#define MCU_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define MCU_PROTO_VERSION 1u
#define MCU_PROTO_MINOR 1u
#define MCU_HDR_SIZE 8u
#define MCU_CRC_SIZE 4u
#ifndef MCU_MAX_PAYLOAD
#define MCU_MAX_PAYLOAD 1024u
#endif
#define MCU_MAX_FRAME (MCU_HDR_SIZE + MCU_MAX_PAYLOAD + MCU_CRC_SIZE)

/* flags */
#define MCU_FLAG_RESPONSE 0x01u
#define MCU_FLAG_DUPLICATE 0x02u /* response re-sent from the cache for a retried seq */

/* Message type ranges: 0x01-0x1F core, 0x20-0x3F model, 0x40-0x5F patch,
 * 0x60-0x7F debug/test, 0x80-0xFF reserved for later protocol versions. */
#define MCU_MSG_INFO 0x01u
#define MCU_MSG_ECHO 0x02u
#define MCU_MSG_STATS 0x03u
#define MCU_MSG_EXIT 0x04u
#define MCU_MSG_TICKS 0x05u
#define MCU_MSG_XFER_BEGIN 0x10u
#define MCU_MSG_XFER_CHUNK 0x11u
#define MCU_MSG_XFER_END 0x12u
#define MCU_MSG_XFER_SIZE 0x13u
#define MCU_MSG_XFER_READ 0x14u
#define MCU_MSG_MODEL_FIRST 0x20u
#define MCU_MSG_MODEL_LAST 0x3Fu
#define MCU_MSG_PATCH_FIRST 0x40u
#define MCU_MSG_PATCH_LAST 0x5Fu
/* patch messages (firmware_templates/patch/patch_dev.c, docs/patch-device.md) */
#define MCU_MSG_PATCH_STATUS 0x40u /* -> store hash, sequence, staging progress */
#define MCU_MSG_PATCH_BEGIN 0x41u  /* start or resume staging a patch */
#define MCU_MSG_PATCH_CHUNK 0x42u  /* patch bytes at an offset (pipelined, go-back-N) */
#define MCU_MSG_PATCH_APPLY 0x43u  /* verify, apply to the other slot, commit */
#define MCU_MSG_PATCH_ABORT 0x44u  /* forget the staged patch */
#define MCU_MSG_PATCH_READ 0x45u   /* read the active weight slot */
#define MCU_MSG_PATCH_FAULT 0x4Fu  /* test builds: power cut at the n-th flash operation */
#define MCU_MSG_DEBUG_FIRST 0x60u
#define MCU_MSG_DEBUG_SCRATCH 0x60u /* stream: a RAM scratch buffer (link tests) */
#define MCU_MSG_DEBUG_COUNTER 0x61u /* non-idempotent: increments and returns a counter */
#define MCU_MSG_DEBUG_LAST 0x7Fu

/* status codes (response header byte 3) */
#define MCU_ST_OK 0u
#define MCU_ST_UNKNOWN_TYPE 1u
#define MCU_ST_BAD_LENGTH 2u
#define MCU_ST_BAD_ARG 3u
#define MCU_ST_BAD_STATE 4u
#define MCU_ST_NO_MODEL 5u
#define MCU_ST_TOO_LARGE 6u
#define MCU_ST_CRC_MISMATCH 7u
#define MCU_ST_BUSY 8u
#define MCU_ST_INTERNAL 9u
#define MCU_ST_UNSUPPORTED 10u
#define MCU_ST_AUTH_FAILED 11u   /* patch tag (HMAC) mismatch */
#define MCU_ST_WRONG_BASE 12u    /* patch made for another model */
#define MCU_ST_REPLAY 13u        /* patch sequence not above the last applied */
#define MCU_ST_PATCH_INVALID 14u /* malformed patch (header, digest, payload) */
#define MCU_ST_APPLY_FAILED 15u  /* applied store != target hash; rolled back */
#define MCU_ST_FLASH_ERROR 16u   /* flash erase/program failed */

/* INFO response: TLV records {u8 tag, u8 len, value}; hosts skip unknown tags. */
#define MCU_INFO_PROTO_VERSION 1u   /* u8 major, u8 minor */
#define MCU_INFO_BOARD 2u           /* string */
#define MCU_INFO_BUILD_ID 3u        /* string */
#define MCU_INFO_MODEL_HASH 4u      /* bytes; empty = no model */
#define MCU_INFO_FLASH_BUDGET 5u    /* u32 */
#define MCU_INFO_RAM_BUDGET 6u      /* u32 */
#define MCU_INFO_MAX_PAYLOAD 7u     /* u16 */
#define MCU_INFO_TICK_HZ 8u         /* u32 */
#define MCU_INFO_INSTR_PER_TICK 9u  /* u32, 0 = unknown */
#define MCU_INFO_MODEL_IN_SIZE 10u  /* u32 */
#define MCU_INFO_MODEL_OUT_SIZE 11u /* u32 */
#define MCU_INFO_FLAGS 12u          /* u32, MCU_INFO_F_* */
#define MCU_INFO_MODEL_NAME 13u     /* string */
#define MCU_INFO_FLASH_USED 14u     /* u32 (from linker symbols; 0 = unknown) */
#define MCU_INFO_SUBNETS 16u        /* u8 levels, u8 active, levels x u16 sparsity (1/10000) */
#define MCU_INFO_RAM_USED 15u       /* u32 (static RAM incl. stack reserve; 0 = unknown) */
#define MCU_INFO_F_TEST_BUILD 0x1u
#define MCU_INFO_F_HAS_MODEL 0x2u
#define MCU_INFO_F_SEMIHOSTING 0x4u

/* ---- handler registry ----------------------------------------------------
 * Any C file of the firmware adds message types with
 *     static uint8_t on_foo(const mcu_msg_t *req, mcu_reply_t *rep) { ... }
 *     MCU_HANDLER(MCU_MSG_FOO, on_foo);
 * The handler reads req->data[0..req->len), writes at most rep->cap bytes to
 * rep->data, sets rep->len and returns an MCU_ST_* status. It never sees a
 * frame with a bad CRC; a retried request (same seq and CRC) gets the cached
 * response without running the handler again. */
typedef struct {
    uint8_t type;
    uint16_t seq;
    const uint8_t *data;
    uint16_t len;
} mcu_msg_t;

typedef struct {
    uint8_t *data;
    uint16_t cap;
    uint16_t len;
} mcu_reply_t;

typedef uint8_t (*mcu_handler_fn)(const mcu_msg_t *req, mcu_reply_t *rep);

typedef struct {
    mcu_handler_fn fn;
    uint32_t type;
    uint32_t reserved;
} mcu_handler_entry_t;

#define MCU_CAT2(a, b) a##b
#define MCU_CAT(a, b) MCU_CAT2(a, b)
#define MCU_HANDLER(type_, fn_)                                                              \
    static const mcu_handler_entry_t MCU_CAT(mcu_handler_, fn_)                              \
        __attribute__((used, section("mcu_handlers"), aligned(sizeof(void *)))) = {(fn_),    \
                                                                                   (type_), 0u}

/* ---- stream registry (chunked transfers) ------------------------------------
 * A stream is named by a message type (e.g. the model input) and moved with
 * the XFER_* messages. Writes arrive in order; the CRC of the whole payload is
 * checked before end() is called. Any callback may be NULL (= unsupported). */
typedef struct {
    uint8_t (*begin)(uint32_t total);                                /* host will write total bytes */
    uint8_t (*write)(uint32_t offset, const uint8_t *d, uint32_t n); /* in order */
    uint8_t (*end)(uint32_t total);                                  /* all bytes in, CRC ok */
    uint32_t (*size)(void);                                          /* readable size */
    uint8_t (*read)(uint32_t offset, uint8_t *d, uint32_t n);
    uint32_t type;
    uint32_t reserved;
} mcu_stream_t;

#define MCU_STREAM(name_)                                                                     \
    static const mcu_stream_t MCU_CAT(mcu_stream_, name_)                                     \
        __attribute__((used, section("mcu_streams"), aligned(sizeof(void *))))

/* ---- core services (app/proto.c) ---- */
void mcu_proto_init(void);
void mcu_proto_rx_byte(uint8_t b);
const mcu_stream_t *mcu_find_stream(uint8_t type);
uint32_t mcu_crc32_update(uint32_t crc, const uint8_t *d, size_t n); /* start at 0 */

typedef struct {
    uint32_t rx_frames;
    uint32_t tx_frames;
    uint32_t bad_crc;
    uint32_t bad_frame;   /* COBS error, short, bad version, length mismatch */
    uint32_t oversized;
    uint32_t duplicates;  /* retries answered from the cache */
    uint32_t unknown_type;
} mcu_proto_stats_t;
extern mcu_proto_stats_t mcu_stats;

/* little-endian helpers */
static inline uint16_t mcu_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t mcu_get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline void mcu_put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void mcu_put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

#endif
