/* Host build (MCU_FLASH_MODEL): the flash array and power of the STM32 controller
 * models (model_stm32f4.c / model_stm32l4.c). The array (plus, for the L4, one ECC
 * state byte per double word) is persisted to the board's backing file
 * (boards/host/flash_host.c, `firmware --flash PATH`) after every change, so a killed
 * process is a power cut that keeps every completed cell. A fault armed with
 * flash_set_fault(n, torn) cuts power at the n-th flash operation: before it, or
 * (torn) inside it, after half of its bus writes, with the next one left half done
 * (an erase: half the page/sector). */
#include "flash.h"
#include "mcu_util.h"
#include "stm32_flash.h"
#include "stm32_model.h"

#ifndef MCU_FLASH_MODEL_CAP
#define MCU_FLASH_MODEL_CAP 0x200000u
#endif
#define FL_TRAILER_MAGIC 0x4D534D4Du /* "MMSM": model image */

uint8_t stm32m_mem[MCU_FLASH_MODEL_CAP];
uint32_t stm32m_size, stm32m_vaddr;
static uint32_t fault_left;
static uint8_t fault_torn, dying;
static uint32_t units_left;

uint8_t *stm32m_attach(uint8_t *area, uint32_t size, uint32_t vaddr, const uint8_t *id, int *loaded) {
    uint8_t trailer[64];
    uint32_t i, sb = stm32m_state_bytes(size);
    if (size + sb > sizeof stm32m_mem) {
        board_log("flash model: area larger than MCU_FLASH_MODEL_CAP");
        board_flash_die();
    }
    stm32m_size = size;
    stm32m_vaddr = vaddr;
    memcpy(stm32m_mem, area, size); /* the image the flasher wrote */
    stm32m_state_init(stm32m_mem, size);
    memset(trailer, 0, sizeof trailer);
    for (i = 0; i < 4; i++) trailer[i] = (uint8_t)(FL_TRAILER_MAGIC >> (8 * i));
    for (i = 0; i < 4; i++) trailer[4 + i] = (uint8_t)(size >> (8 * i));
    for (i = 0; i < 32; i++) trailer[8 + i] = id[i];
    *loaded = board_flash_open(stm32m_mem, size + sb, trailer) == 1;
    stm32m_power_on();
    return stm32m_mem;
}

void stm32m_persist(uint32_t off, uint32_t n) {
    if (board_flash_persist(off, stm32m_mem + off, n) < 0) {
        board_log("flash model: backing file write failed");
        board_flash_die();
    }
}

void stm32m_set_fault(uint32_t n, uint8_t torn) {
    fault_left = n;
    fault_torn = torn;
    dying = 0;
}

void stm32m_op_begin(uint32_t units) {
    if (!fault_left || --fault_left) return;
    if (!fault_torn) board_flash_die(); /* power gone before the operation starts */
    dying = 1;
    units_left = units / 2u;
}

int stm32m_unit(void) {
    if (!dying) return 0;
    if (units_left) {
        units_left--;
        return 0;
    }
    return 1; /* this bus write / erase is the one the power cut tears */
}
