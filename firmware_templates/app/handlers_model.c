/* Model messages (0x20-0x3F, docs/protocol.md "Model messages") over model_iface.h.
 * Host end: toolchain/link/model.py (ModelClient). Without a model every request
 * answers NO_MODEL (the weak definitions of model_none.c). */
#include "mcu_proto.h"
#include "mcu_util.h"
#include "model_iface.h"

#define MSG_MODEL_INFO 0x20u         /* -> model descriptor */
#define MSG_MODEL_INPUT 0x21u        /* stream: the input tensor (write, read back) */
#define MSG_MODEL_INVOKE 0x22u       /* -> u64 count, u8 unit */
#define MSG_MODEL_OUTPUT 0x23u       /* stream: the output tensor (read) */
#define MSG_MODEL_INFER 0x24u        /* input bytes -> u64 count, u8 unit, output bytes */
#define MSG_MODEL_LAYER_TIMES 0x25u  /* u16 first -> u16 total, u16 first, u8 unit, u8 n, n x u64 */
#define MSG_MODEL_LAYER_INFO 0x26u   /* u16 k -> u16 k, u32 out bytes, name */
#define MSG_MODEL_RUN_TO 0x27u       /* u16 k -> u64 count, u8 unit, u32 out bytes */
#define MSG_MODEL_LAYER_OUTPUT 0x28u /* stream: output of the layer of the last RUN_TO (read) */
#define MSG_MODEL_LEVEL 0x29u        /* [u8 k] -> u8 active, u8 levels, levels x u16 sparsity */

static uint16_t sel_layer = 0xFFFFu; /* layer of the last RUN_TO */

static uint8_t has_model(void) { return model_hash() != 0 && model_num_layers() > 0; }

static void put_count(uint8_t *p) {
    uint64_t c = model_last_count();
    mcu_put_u32(p, (uint32_t)c);
    mcu_put_u32(p + 4, (uint32_t)(c >> 32));
    p[8] = model_count_unit();
}

static uint8_t on_info(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint32_t n;
    const uint8_t *d = model_desc(&n);
    (void)req;
    if (!has_model() || !d) return MCU_ST_NO_MODEL;
    if (n > rep->cap) return MCU_ST_TOO_LARGE;
    memcpy(rep->data, d, n);
    rep->data[1] = model_count_unit();
    rep->len = (uint16_t)n;
    return MCU_ST_OK;
}
MCU_HANDLER(MSG_MODEL_INFO, on_info);

static uint8_t on_invoke(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint8_t st;
    (void)req;
    if (!has_model()) return MCU_ST_NO_MODEL;
    st = model_invoke();
    sel_layer = 0xFFFFu;
    if (st != MCU_ST_OK) return st;
    put_count(rep->data);
    rep->len = 9;
    return MCU_ST_OK;
}
MCU_HANDLER(MSG_MODEL_INVOKE, on_invoke);

/* One-frame inference: the whole input in, count + the whole output back. */
static uint8_t on_infer(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint8_t st;
    uint32_t on;
    if (!has_model()) return MCU_ST_NO_MODEL;
    if (req->len != model_input_size()) return MCU_ST_BAD_LENGTH;
    on = model_output_size();
    if (9u + on > rep->cap) return MCU_ST_TOO_LARGE;
    memcpy(model_input(), req->data, req->len);
    st = model_invoke();
    sel_layer = 0xFFFFu;
    if (st != MCU_ST_OK) return st;
    put_count(rep->data);
    memcpy(rep->data + 9, model_output(), on);
    rep->len = (uint16_t)(9u + on);
    return MCU_ST_OK;
}
MCU_HANDLER(MSG_MODEL_INFER, on_infer);

static uint8_t on_layer_times(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint32_t total = model_num_layers(), first, n, i;
    if (!has_model()) return MCU_ST_NO_MODEL;
    if (req->len != 2u) return MCU_ST_BAD_LENGTH;
    first = mcu_get_u16(req->data);
    if (first > total) return MCU_ST_BAD_ARG;
    n = total - first;
    if (n > (rep->cap - 6u) / 8u) n = (rep->cap - 6u) / 8u;
    if (n > 255u) n = 255u;
    mcu_put_u16(rep->data, (uint16_t)total);
    mcu_put_u16(rep->data + 2, (uint16_t)first);
    rep->data[4] = model_count_unit();
    rep->data[5] = (uint8_t)n;
    for (i = 0; i < n; i++) {
        uint64_t c = model_layer_count(first + i);
        mcu_put_u32(rep->data + 6 + 8 * i, (uint32_t)c);
        mcu_put_u32(rep->data + 10 + 8 * i, (uint32_t)(c >> 32));
    }
    rep->len = (uint16_t)(6u + 8u * n);
    return MCU_ST_OK;
}
MCU_HANDLER(MSG_MODEL_LAYER_TIMES, on_layer_times);

static uint8_t on_layer_info(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint32_t k, size, len;
    const char *name;
    if (!has_model()) return MCU_ST_NO_MODEL;
    if (req->len != 2u) return MCU_ST_BAD_LENGTH;
    k = mcu_get_u16(req->data);
    if (k >= model_num_layers()) return MCU_ST_BAD_ARG;
    (void)model_layer_output(k, &size);
    name = model_layer_name(k);
    len = strlen(name);
    if (len > rep->cap - 6u) len = rep->cap - 6u;
    mcu_put_u16(rep->data, (uint16_t)k);
    mcu_put_u32(rep->data + 2, size);
    memcpy(rep->data + 6, name, len);
    rep->len = (uint16_t)(6u + len);
    return MCU_ST_OK;
}
MCU_HANDLER(MSG_MODEL_LAYER_INFO, on_layer_info);

/* Run from the current input up to layer k; its output becomes the LAYER_OUTPUT stream. */
static uint8_t on_run_to(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint32_t k, size;
    uint8_t st;
    if (!has_model()) return MCU_ST_NO_MODEL;
    if (req->len != 2u) return MCU_ST_BAD_LENGTH;
    k = mcu_get_u16(req->data);
    if (k >= model_num_layers()) return MCU_ST_BAD_ARG;
    st = model_invoke_until((int32_t)k);
    if (st != MCU_ST_OK) return st;
    sel_layer = (uint16_t)k;
    (void)model_layer_output(k, &size);
    put_count(rep->data);
    mcu_put_u32(rep->data + 9, size);
    rep->len = 13;
    return MCU_ST_OK;
}
MCU_HANDLER(MSG_MODEL_RUN_TO, on_run_to);

/* Subnet level: an empty request reads it, {u8 k} selects level k first (an index out
 * of range answers BAD_ARG and changes nothing; an ordinary model: UNSUPPORTED). */
static uint8_t on_level(const mcu_msg_t *req, mcu_reply_t *rep) {
    uint32_t n = model_num_levels(), i;
    if (!has_model()) return MCU_ST_NO_MODEL;
    if (req->len > 1u) return MCU_ST_BAD_LENGTH;
    if (n == 0u) return MCU_ST_UNSUPPORTED;
    if (req->len == 1u) {
        uint8_t st = model_set_level(req->data[0]);
        if (st != MCU_ST_OK) return st;
        sel_layer = 0xFFFFu;
    }
    if (n > (rep->cap - 2u) / 2u) n = (rep->cap - 2u) / 2u;
    rep->data[0] = (uint8_t)model_level();
    rep->data[1] = (uint8_t)n;
    for (i = 0; i < n; i++) mcu_put_u16(rep->data + 2u + 2u * i, model_level_sparsity(i));
    rep->len = (uint16_t)(2u + 2u * n);
    return MCU_ST_OK;
}
MCU_HANDLER(MSG_MODEL_LEVEL, on_level);

/* ---- streams ---- */
static uint8_t in_begin(uint32_t total) {
    if (!has_model()) return MCU_ST_NO_MODEL;
    return total == model_input_size() ? MCU_ST_OK : MCU_ST_BAD_LENGTH;
}
static uint8_t in_write(uint32_t off, const uint8_t *d, uint32_t n) {
    memcpy(model_input() + off, d, n);
    return MCU_ST_OK;
}
static uint32_t in_size(void) { return has_model() ? model_input_size() : 0u; }
static uint8_t in_read(uint32_t off, uint8_t *d, uint32_t n) {
    if (!n) return MCU_ST_OK; /* no model: model_input() is NULL (memcpy from NULL is UB) */
    memcpy(d, model_input() + off, n);
    return MCU_ST_OK;
}
MCU_STREAM(model_input) = {in_begin, in_write, 0, in_size, in_read, MSG_MODEL_INPUT, 0u};

static uint32_t out_size(void) { return has_model() ? model_output_size() : 0u; }
static uint8_t out_read(uint32_t off, uint8_t *d, uint32_t n) {
    if (!n) return MCU_ST_OK; /* no model: model_output() is NULL */
    memcpy(d, model_output() + off, n);
    return MCU_ST_OK;
}
MCU_STREAM(model_output) = {0, 0, 0, out_size, out_read, MSG_MODEL_OUTPUT, 0u};

static uint32_t lo_size(void) {
    uint32_t size = 0;
    if (sel_layer == 0xFFFFu || !has_model()) return 0;
    (void)model_layer_output(sel_layer, &size);
    return size;
}
static uint8_t lo_read(uint32_t off, uint8_t *d, uint32_t n) {
    uint32_t size;
    const uint8_t *p;
    if (sel_layer == 0xFFFFu) return MCU_ST_BAD_STATE;
    p = model_layer_output(sel_layer, &size);
    memcpy(d, p + off, n);
    return MCU_ST_OK;
}
MCU_STREAM(model_layer_output) = {0, 0, 0, lo_size, lo_read, MSG_MODEL_LAYER_OUTPUT, 0u};
