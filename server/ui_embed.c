/*
 * ui_embed.c - build tool: turns the console's files (server/ui/) into one C
 * file that keywardd links (build/gen/ui_assets.c, route_ui.h), each file
 * with its content type and a strong ETag (the SHA-256 of its bytes).
 *
 *   ui_embed OUT.c FILE...
 *
 * It also refuses what the console's Content-Security-Policy would block or
 * what the house rules ban (docs/console.md), so a mistake fails the build
 * rather than the browser: in HTML an inline <script> (one without src), a
 * <style> element, a style="" or on*="" attribute; in JavaScript eval, new
 * Function, innerHTML / outerHTML / insertAdjacentHTML and document.write.
 * Exit status 0, or 1 with one line on stderr naming the file and the rule.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define EMBED_MAX_FILE (512u * 1024u)   /* a response body is at most 1 MiB */
#define EMBED_MAX_FILES 64

struct embed_type {
        const char *ext;
        const char *content_type;
        int is_html;
};

static const struct embed_type embed_types[] = {
        { ".html", "text/html; charset=utf-8", 1 },
        { ".css", "text/css; charset=utf-8", 0 },
        { ".js", "text/javascript; charset=utf-8", 0 },
        { ".svg", "image/svg+xml", 0 },
};

static const struct embed_type *embed_type_of(const char *name)
{
        size_t n = strlen(name);
        for (size_t i = 0; i < sizeof embed_types / sizeof embed_types[0]; i++) {
                size_t e = strlen(embed_types[i].ext);
                if (n > e && strcmp(name + n - e, embed_types[i].ext) == 0)
                        return &embed_types[i];
        }
        return NULL;
}

/* The base name: [a-z0-9._-], not starting with a dot. */
static const char *embed_base(const char *path)
{
        const char *b = strrchr(path, '/');
        b = b ? b + 1 : path;
        if (b[0] == '\0' || b[0] == '.' || strspn(b, "abcdefghijklmnopqrstuvwxyz0123456789._-") != strlen(b))
                return NULL;
        return b;
}

static unsigned char *embed_read(const char *path, size_t *ret_len)
{
        FILE *f = fopen(path, "rb");
        if (f == NULL)
                return NULL;
        unsigned char *p = malloc(EMBED_MAX_FILE + 1);
        size_t n = p ? fread(p, 1, EMBED_MAX_FILE + 1, f) : 0;
        int bad = p == NULL || ferror(f) || n > EMBED_MAX_FILE;
        fclose(f);
        if (bad) {
                free(p);
                return NULL;
        }
        p[n] = '\0';
        *ret_len = n;
        return p;
}

/* Case-insensitive search in the NUL-terminated text. */
static const char *embed_find(const char *hay, const char *needle)
{
        return strcasestr(hay, needle);
}

/* The first HTML rule the text breaks, or NULL. */
static const char *embed_html_rule(const char *text)
{
        for (const char *p = text; (p = embed_find(p, "<script")) != NULL; p++) {
                const char *end = strchr(p, '>');
                if (end == NULL)
                        return "an unterminated <script> tag";
                size_t n = (size_t)(end - p);
                char tag[512];
                if (n >= sizeof tag)
                        return "a <script> tag longer than 512 bytes";
                memcpy(tag, p, n);
                tag[n] = '\0';
                if (embed_find(tag, " src=") == NULL)
                        return "an inline <script> (without src)";
        }
        if (embed_find(text, "<style") != NULL)
                return "a <style> element";
        if (embed_find(text, " style=") != NULL)
                return "a style attribute";
        for (const char *p = text; (p = strstr(p, " on")) != NULL; p++) {
                size_t k = 3;
                while (isalpha((unsigned char)p[k]))
                        k++;
                if (k > 3 && p[k] == '=')
                        return "an on* event handler attribute";
        }
        return NULL;
}

static const char *embed_js_rule(const char *text)
{
        static const char *const banned[] = { "eval(", "new Function", "innerHTML", "outerHTML",
                                              "insertAdjacentHTML", "document.write" };
        for (size_t i = 0; i < sizeof banned / sizeof banned[0]; i++)
                if (strstr(text, banned[i]) != NULL)
                        return banned[i];
        return NULL;
}

static int embed_sha256_hex(const unsigned char *p, size_t n, char out[65])
{
        unsigned char md[32];
        unsigned int len = 0;
        if (EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32)
                return 0;
        for (unsigned i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
        return 1;
}

static int embed_fail(const char *path, const char *why)
{
        fprintf(stderr, "ui_embed: %s: %s\n", path, why);
        return 1;
}

int main(int argc, char **argv)
{
        if (argc < 3 || argc - 2 > EMBED_MAX_FILES) {
                fprintf(stderr, "usage: ui_embed OUT.c FILE... (at most %d files)\n", EMBED_MAX_FILES);
                return 2;
        }
        const char *out_path = argv[1];
        char tmp_path[4096];
        if ((size_t)snprintf(tmp_path, sizeof tmp_path, "%s.tmp", out_path) >= sizeof tmp_path)
                return embed_fail(out_path, "path too long");
        FILE *out = fopen(tmp_path, "w");
        if (out == NULL)
                return embed_fail(tmp_path, "cannot create");
        fprintf(out, "/* generated by server/ui_embed.c from server/ui/: do not edit */\n"
                     "#include \"front/route_ui.h\"\n\n");
        char hex[EMBED_MAX_FILES][65];
        size_t lens[EMBED_MAX_FILES];
        int rc = 0;
        for (int i = 2; i < argc && rc == 0; i++) {
                const char *path = argv[i];
                const char *base = embed_base(path);
                const struct embed_type *t = base ? embed_type_of(base) : NULL;
                size_t n = 0;
                unsigned char *p = t ? embed_read(path, &n) : NULL;
                const char *rule = NULL;
                if (base == NULL || t == NULL)
                        rc = embed_fail(path, "name not [a-z0-9._-] with .html, .css, .js or .svg");
                else if (p == NULL)
                        rc = embed_fail(path, "cannot read (or larger than 512 KiB)");
                else if (strlen((const char *)p) != n)
                        rc = embed_fail(path, "contains a NUL byte");
                else if (t->is_html && (rule = embed_html_rule((const char *)p)) != NULL)
                        rc = embed_fail(path, rule);
                else if (strcmp(t->ext, ".js") == 0 && (rule = embed_js_rule((const char *)p)) != NULL)
                        rc = embed_fail(path, rule);
                else if (!embed_sha256_hex(p, n, hex[i - 2]))
                        rc = embed_fail(path, "SHA-256 failed");
                if (rc == 0) {
                        lens[i - 2] = n;
                        fprintf(out, "static const unsigned char ui_file_%d[%zu] = {", i - 2, n ? n : 1);
                        for (size_t k = 0; k < n; k++)
                                fprintf(out, "%s0x%02x,", k % 16 ? "" : "\n\t", p[k]);
                        fprintf(out, "%s\n};\n", n ? "" : "0");
                }
                free(p);
        }
        if (rc == 0) {
                fprintf(out, "\nconst struct kw_ui_asset kw_ui_assets[] = {\n");
                for (int i = 2; i < argc; i++) {
                        const struct embed_type *t = embed_type_of(embed_base(argv[i]));
                        fprintf(out, "\t{ \"%s\", ui_file_%d, %zu, \"%s\", \"\\\"%s\\\"\", %d },\n",
                                embed_base(argv[i]), i - 2, lens[i - 2], t->content_type, hex[i - 2],
                                t->is_html);
                }
                fprintf(out, "};\nconst size_t kw_ui_assets_n = %d;\n", argc - 2);
        }
        if (fclose(out) != 0 && rc == 0)
                rc = embed_fail(tmp_path, "cannot write");
        if (rc == 0 && rename(tmp_path, out_path) != 0)
                rc = embed_fail(out_path, "cannot rename into place");
        if (rc != 0)
                remove(tmp_path);
        return rc;
}
