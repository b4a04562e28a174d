/*
 * A QEMU TCG plugin (user mode) that counts executed guest instructions between the markers
 * pte_runner issues with --markers, so that a count belongs to one forward pass and not to
 * the process (start-up, XNNPACK's weight packing at load_method).
 *
 *   qemu-aarch64 -plugin ./libinsn_count.so -cpu cortex-a76 -L /usr/aarch64-linux-gnu \
 *       pte_runner --markers ...
 *
 * At exit it writes one line per marked region to stderr, "insns <label> <count>", and a
 * total, "insns process <count>". Counting uses QEMU's inline add on each translation block,
 * so it is cheap and exact for a single guest thread; with several guest threads the adds
 * race and the counts are approximate (pte_runner --threads 1 for counting).
 *
 * Written against plugin API version 1 (QEMU 6.0 to 8.1, Debian 12's QEMU 7.2). Debian ships
 * no qemu-plugin.h, so the few entry points used are declared here with the signatures the
 * QEMU plugin API documents; build.sh builds this file with the host compiler.
 */

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t; /* only passed through */

enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*atexit_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                             uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                             uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8);

extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb_t cb);
extern void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb,
                                                     enum qemu_plugin_op op, void *ptr,
                                                     uint64_t imm);
extern void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, syscall_cb_t cb);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, atexit_cb_t cb,
                                           void *userdata);
extern void qemu_plugin_outs(const char *string);

EXPORT int qemu_plugin_version = 1;

/* pte_runner's marker: syscall(MARKER_SYSCALL, 0 = begin | 1 = end, run index). Linux has
 * no syscall with this number, so on real hardware it only returns ENOSYS. */
#define MARKER_SYSCALL 0x4c4d46 /* "LMF" */
#define MAX_REGIONS 64

static uint64_t executed;
static uint64_t begun_at = UINT64_MAX;
static uint64_t region_count[MAX_REGIONS];
static uint64_t region_run[MAX_REGIONS];
static int regions;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    (void)id, (void)vcpu_index, (void)a3, (void)a4, (void)a5, (void)a6, (void)a7, (void)a8;
    if (num != MARKER_SYSCALL) {
        return;
    }
    if (a1 == 0) {
        begun_at = executed;
    } else if (a1 == 1 && begun_at != UINT64_MAX && regions < MAX_REGIONS) {
        region_count[regions] = executed - begun_at;
        region_run[regions] = a2;
        regions++;
        begun_at = UINT64_MAX;
    }
}

static void on_exit(qemu_plugin_id_t id, void *userdata)
{
    char line[96];
    (void)id, (void)userdata;
    for (int i = 0; i < regions; i++) {
        snprintf(line, sizeof line, "insns run%" PRIu64 " %" PRIu64 "\n", region_run[i],
                 region_count[i]);
        qemu_plugin_outs(line);
    }
    snprintf(line, sizeof line, "insns process %" PRIu64 "\n", executed);
    qemu_plugin_outs(line);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                               char **argv)
{
    (void)info, (void)argc, (void)argv;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
