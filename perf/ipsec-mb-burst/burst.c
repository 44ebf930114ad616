/* intel-ipsec-mb: AES-128-GCM through its direct API (one call per packet, as espada's
 * ipsec-mb backend does) against its job API in bursts (IMB_SUBMIT_BURST, 32 jobs per call),
 * same key, same buffers, same core. Usage: burst SIZE ITERATIONS (ITERATIONS bursts of 32).
 * Prints ns per packet for each. docs/performance.md has the figures. */
#include <intel-ipsec-mb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N 32

static double now(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
        if (argc != 3) {
                fprintf(stderr, "usage: %s SIZE ITERATIONS\n", argv[0]);
                return 2;
        }
        int len = atoi(argv[1]);
        long iters = atol(argv[2]);
        if (len <= 0 || len > 2048 || iters <= 0) {
                fprintf(stderr, "SIZE 1..2048, ITERATIONS > 0\n");
                return 2;
        }
        IMB_MGR *m = alloc_mb_mgr(0);
        if (m == NULL)
                return 1;
        init_mb_mgr_auto(m, NULL);
        uint8_t key[16] = {1, 2, 3};
        struct gcm_key_data kd __attribute__((aligned(64)));
        IMB_AES128_GCM_PRE(m, key, &kd);
        static uint8_t buf[N][2048];
        static uint8_t iv[N][12], aad[N][8], tag[N][16];
        memset(buf, 7, sizeof buf);
        memset(iv, 1, sizeof iv);
        memset(aad, 2, sizeof aad);

        struct gcm_context_data ctx;
        double t0 = now();
        for (long it = 0; it < iters; it++)
                for (int i = 0; i < N; i++)
                        IMB_AES128_GCM_ENC(m, &kd, &ctx, buf[i], buf[i], len, iv[i], aad[i], 8,
                                           tag[i], 16);
        double direct = (now() - t0) * 1e9 / (iters * N);

        IMB_JOB *jobs[N];
        long done = 0;
        t0 = now();
        for (long it = 0; it < iters; it++) {
                uint32_t n = IMB_GET_NEXT_BURST(m, N, jobs);
                if (n < N) {
                        done += IMB_FLUSH_BURST(m, N, jobs);
                        continue;
                }
                for (int i = 0; i < N; i++) {
                        IMB_JOB *j = jobs[i];
                        j->cipher_mode = IMB_CIPHER_GCM;
                        j->hash_alg = IMB_AUTH_AES_GMAC;
                        j->chain_order = IMB_ORDER_CIPHER_HASH;
                        j->cipher_direction = IMB_DIR_ENCRYPT;
                        j->enc_keys = &kd;
                        j->dec_keys = &kd;
                        j->key_len_in_bytes = 16;
                        j->src = buf[i];
                        j->dst = buf[i];
                        j->cipher_start_src_offset_in_bytes = 0;
                        j->msg_len_to_cipher_in_bytes = len;
                        j->hash_start_src_offset_in_bytes = 0;
                        j->msg_len_to_hash_in_bytes = len;
                        j->iv = iv[i];
                        j->iv_len_in_bytes = 12;
                        j->u.GCM.aad = aad[i];
                        j->u.GCM.aad_len_in_bytes = 8;
                        j->auth_tag_output = tag[i];
                        j->auth_tag_output_len_in_bytes = 16;
                }
                uint32_t c = IMB_SUBMIT_BURST(m, N, jobs);
                done += c;
                for (uint32_t i = 0; i < c; i++)
                        if (jobs[i]->status != IMB_STATUS_COMPLETED) {
                                fprintf(stderr, "job failed: %d\n", imb_get_errno(m));
                                return 1;
                        }
        }
        double burst = (now() - t0) * 1e9 / (iters * N);
        printf("size %d arch %u: direct %.1f ns, job burst %.1f ns (%ld jobs)\n", len,
               m->used_arch, direct, burst, done);
        free_mb_mgr(m);
        return 0;
}
