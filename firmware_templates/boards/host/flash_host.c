/* Host board backend of the NOR flash emulation (flash.h): a plain file, written with
 * pwrite before memory is updated (a killed process keeps every completed write:
 * the kernel's page cache survives the process). Path: `firmware --flash PATH`. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flash.h"

const char *board_flash_path; /* set by main() from --flash */
static int flash_fd = -1;

static int write_all(int fd, const uint8_t *d, size_t n, off_t off) {
    while (n) {
        ssize_t w = pwrite(fd, d, n, off);
        if (w <= 0) return -1;
        d += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

int board_flash_open(uint8_t *area, uint32_t size, const uint8_t *trailer64) {
    struct stat st;
    uint8_t t[64];
    if (!board_flash_path) return -1;
    flash_fd = open(board_flash_path, O_RDWR | O_CREAT, 0644);
    if (flash_fd < 0) {
        fprintf(stderr, "host board: cannot open flash file %s\n", board_flash_path);
        return -1;
    }
    if (fstat(flash_fd, &st) == 0 && st.st_size == (off_t)size + 64 &&
        pread(flash_fd, t, 64, (off_t)size) == 64 && memcmp(t, trailer64, 64) == 0 &&
        pread(flash_fd, area, size, 0) == (ssize_t)size)
        return 1;
    if (ftruncate(flash_fd, 0) != 0 || write_all(flash_fd, area, size, 0) != 0 ||
        write_all(flash_fd, trailer64, 64, (off_t)size) != 0) {
        fprintf(stderr, "host board: cannot write flash file %s\n", board_flash_path);
        close(flash_fd);
        flash_fd = -1;
        return -1;
    }
    return 0;
}

int board_flash_persist(uint32_t off, const uint8_t *data, uint32_t n) {
    if (flash_fd < 0) return 0; /* no backing file: RAM only */
    return write_all(flash_fd, data, n, (off_t)off);
}

void board_flash_die(void) { _exit(99); }
