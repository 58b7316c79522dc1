/*
 * sigv4_vectors_test.h - AWS's SigV4 test suite for the cmocka tests of both
 * sides of SigV4: the verifier (front/sigv4_test.c) and keyward-provision's
 * signer (provisioning/sigv4_sign_test.c).  The 31 cases live in
 * /work/shared/vectors/sigv4 (with their LICENSE and NOTICE), found through
 * KW_SRCDIR/../shared/vectors/sigv4.  Test code only: include it after
 * <cmocka.h> (its helpers assert).
 */
#ifndef KW_SIGV4_VECTORS_TEST_H
#define KW_SIGV4_VECTORS_TEST_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "front/sigv4.h"

/* the suite's secret access key (AKIDEXAMPLE, us-east-1, service "service") */
#define SIGV4_VEC_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define MAX_CASES 64
#define MAX_HDRS 32

static char case_dirs[MAX_CASES][512];
static size_t n_cases;

static inline char *slurp(const char *path, size_t *ret_len)
{
        FILE *f = fopen(path, "rb");
        if (f == NULL)
                return NULL;
        char *buf = malloc(65536);
        size_t n = buf ? fread(buf, 1, 65535, f) : 0;
        fclose(f);
        if (buf == NULL)
                return NULL;
        buf[n] = '\0';
        if (ret_len)
                *ret_len = n;
        return buf;
}

static inline void find_cases(const char *dir)
{
        DIR *d = opendir(dir);
        if (d == NULL)
                return;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.')
                        continue;
                char p[512];
                if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p)
                        continue;
                struct stat st;
                if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
                        continue;
                char req[1100];
                if (snprintf(req, sizeof req, "%s/%.255s.req", p, e->d_name) >= (int)sizeof req)
                        continue;
                if (access(req, R_OK) == 0 && n_cases < MAX_CASES)
                        snprintf(case_dirs[n_cases++], sizeof case_dirs[0], "%s", p);
                find_cases(p);
        }
        closedir(d);
}

/* A parsed .req file: pointers into its (mutable) text. */
struct vreq {
        char *text;
        char method[16];
        char path[1024];
        char query[1024];
        int has_query;
        struct kw_sigv4_header h[MAX_HDRS];
        size_t nh;
        const uint8_t *body;
        size_t body_len;
};

/* Request line, "Name:value" lines (a line starting with blanks continues
 * the previous header as another value of the same name), a blank line,
 * the body. */
static inline void parse_req(char *text, struct vreq *r)
{
        memset(r, 0, sizeof *r);
        r->text = text;
        char *eol = strchr(text, '\n');
        assert_non_null(eol);
        *eol = '\0';
        char *sp1 = strchr(text, ' ');
        char *sp2 = strrchr(text, ' ');
        assert_true(sp1 && sp2 && sp2 > sp1);
        snprintf(r->method, sizeof r->method, "%.*s", (int)(sp1 - text), text);
        char target[1024];
        snprintf(target, sizeof target, "%.*s", (int)(sp2 - sp1 - 1), sp1 + 1);
        char *qm = strchr(target, '?');
        if (qm) {
                *qm = '\0';
                snprintf(r->query, sizeof r->query, "%s", qm + 1);
                r->has_query = 1;
        }
        snprintf(r->path, sizeof r->path, "%s", target);
        char *line = eol + 1;
        const char *last_name = NULL;
        size_t last_len = 0;
        for (;;) {
                char *nl = strchr(line, '\n');
                size_t len = nl ? (size_t)(nl - line) : strlen(line);
                if (len == 0) {
                        if (nl) {
                                r->body = (const uint8_t *)(nl + 1);
                                r->body_len = strlen(nl + 1);
                        }
                        break;
                }
                assert_true(r->nh < MAX_HDRS);
                struct kw_sigv4_header *h = &r->h[r->nh++];
                if (line[0] == ' ' || line[0] == '\t') {
                        h->name = last_name;
                        h->name_len = last_len;
                        h->value = line;
                        h->value_len = len;
                } else {
                        char *colon = memchr(line, ':', len);
                        assert_non_null(colon);
                        h->name = line;
                        h->name_len = (size_t)(colon - line);
                        h->value = colon + 1;
                        h->value_len = len - h->name_len - 1;
                        last_name = h->name;
                        last_len = h->name_len;
                }
                if (!nl)
                        break;
                line = nl + 1;
        }
}

static inline struct kw_sigv4_request as_request(const struct vreq *v)
{
        return (struct kw_sigv4_request){ .method = v->method, .path = v->path,
                                          .query = v->has_query ? v->query : NULL,
                                          .headers = v->h, .n_headers = v->nh, .body = v->body,
                                          .body_len = v->body_len, .normalize_path = 1 };
}

/* Every case under KW_SRCDIR/../shared/vectors/sigv4 into case_dirs. */
static inline void find_all_cases(void)
{
        const char *src = getenv("KW_SRCDIR");
        char root[512];
        snprintf(root, sizeof root, "%s/../shared/vectors/sigv4", src ? src : ".");
        n_cases = 0;
        find_cases(root);
}

/* <case dir>/<case name>.<ext>, NUL-terminated, to free(); NULL when absent. */
static inline char *case_file(const char *case_dir, const char *ext)
{
        const char *base = strrchr(case_dir, '/') + 1;
        char p[1200];
        snprintf(p, sizeof p, "%.500s/%.100s.%.8s", case_dir, base, ext);
        return slurp(p, NULL);
}

#endif
