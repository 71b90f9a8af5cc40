/* The model interface the app uses. app/model_none.c gives weak "no model"
 * definitions; generated model code provides strong ones that override them. */
#ifndef MCU_MODEL_IFACE_H
#define MCU_MODEL_IFACE_H
#include <stdint.h>

/* Model hash (e.g. sha256 of the deployed int8 model); NULL when there is no model. */
const uint8_t *model_hash(void);
uint32_t model_hash_len(void);
const char *model_name(void);
uint32_t model_input_size(void);   /* bytes */
uint32_t model_output_size(void);  /* bytes */
uint8_t *model_input(void);        /* input buffer of model_input_size() bytes, or NULL */
const uint8_t *model_output(void); /* output buffer of model_output_size() bytes, or NULL */
/* Run one inference; returns an MCU_ST_* status (MCU_ST_NO_MODEL without a model). */
uint8_t model_invoke(void);
#endif
