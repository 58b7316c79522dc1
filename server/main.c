/*
 * main.c - keywardd start-up: configuration, the custody process (a fresh
 * exec of this binary with --custody, so it shares no memory with the
 * network side), the HTTPS front, signals, and custody supervision.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "config.h"
#include "custody/custody.h"
#include "front/front.h"
#include "front/route_ekm.h"
#include "front/route_attest.h"
#include "front/route_xks.h"

#ifndef KEYWARD_VERSION
#define KEYWARD_VERSION "0.0.0-dev"
#endif

/*
 * The route table, built once at start from the configuration.  http.c
 * matches the longest prefix; a route not allowed on a listener is "no
 * route" there.  The admin API shares the main listener unless [admin]
 * listen names another address.  Protocol routes (EKM, XKS, attestation)
 * add their rows here, each only when enabled.
 */
#define MAX_ROUTES 32
static struct kw_route route_table[MAX_ROUTES + 1];

static void route_add(size_t *n, const char *prefix, unsigned listeners, kw_route_fn fn,
                      const char *name, kw_route_error_fn error)
{
        if (*n < MAX_ROUTES)
                route_table[(*n)++] = (struct kw_route){ prefix, listeners, fn, name, error };
}

static const struct kw_route *build_routes(const struct kw_config *cfg)
{
        int split = cfg->admin.listen && cfg->admin.listen[0] &&
                    strcmp(cfg->admin.listen, cfg->http.listen) != 0;
        unsigned admin = split ? KW_LISTENER_ADMIN : KW_LISTENER_MAIN | KW_LISTENER_ADMIN;
        unsigned both = KW_LISTENER_MAIN | KW_LISTENER_ADMIN;
        size_t n = 0;
        route_add(&n, "/healthz", both, kw_route_healthz, "healthz", NULL);
        if (cfg->admin.enable) {
                route_add(&n, "/api/v1/", admin, kw_route_admin, "admin", NULL);
                route_add(&n, "/metrics", admin, kw_route_metrics, "metrics", NULL);
        }
        /* protocol routes: on the main listener only */
        if (cfg->ekm.azure_ekm_enable)
                route_add(&n, KW_EKM_ROUTE_PREFIX, KW_LISTENER_MAIN, kw_route_ekm, "ekm",
                          kw_route_ekm_error);
        if (cfg->attestation.enable)
                route_add(&n, "/attestation", KW_LISTENER_MAIN, kw_route_attest, "attestation",
                          NULL);
        /* AWS XKS: the catch-all "/" (lowest priority: the longest prefix
         * wins), because key stores have arbitrary URI prefixes and the admin
         * API creates new ones at run time; non-XKS paths get the generic 404 */
        route_add(&n, "/", KW_LISTENER_MAIN, kw_route_xks, "xks", kw_route_xks_error);
        route_table[n] = (struct kw_route){ NULL, 0, NULL, NULL, NULL };
        return route_table;
}

static void usage(FILE *f)
{
        fprintf(f,
                "usage: keywardd [--config FILE] [--check-config]\n"
                "       keywardd --version | --help\n"
                "\n"
                "  --config FILE     configuration (default " KW_CONFIG_DEFAULT_PATH ")\n"
                "  --check-config    validate the configuration and the files it names, then exit\n"
                "\n"
                "Every setting can be overridden with KEYWARD_<SECTION>_<KEY> (see docs/config.md).\n"
                "Exit status: 0 ok, 2 usage or configuration, 3 files/network, 4 HSM, 5 database.\n");
}

/* Files the configuration names must be there before anything starts. */
static int check_files(const struct kw_config *cfg)
{
        struct {
                const char *what, *path;
        } need[] = {
                { "[hsm] module", cfg->hsm.module },
                { "[hsm] pin_file", cfg->hsm.pin_file },
                { "[tls] tls_cert_file", cfg->tls.tls_cert_file },
                { "[tls] tls_key_file", cfg->tls.tls_key_file },
                { "[tls] tls_p12_file", cfg->tls.tls_p12_file },
                { "[tls] clients_ca_cert_file", cfg->tls.clients_ca_cert_file },
        };
        int bad = 0;
        for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
                if (need[i].path == NULL || need[i].path[0] == '\0')
                        continue;
                if (access(need[i].path, R_OK) != 0) {
                        fprintf(stderr, "keywardd: %s: cannot read %s: %s\n", need[i].what,
                                need[i].path, strerror(errno));
                        bad = 1;
                }
        }
        if ((cfg->tls.tls_cert_file == NULL || cfg->tls.tls_cert_file[0] == '\0') &&
            (cfg->tls.tls_p12_file == NULL || cfg->tls.tls_p12_file[0] == '\0')) {
                fprintf(stderr, "keywardd: [tls]: no server certificate: set tls_cert_file and "
                                "tls_key_file, or tls_p12_file\n");
                bad = 1;
        }
        return bad;
}

static int mkdir_parent(const char *path)
{
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash == NULL || slash == dir)
                return 0;
        *slash = '\0';
        for (char *p = dir + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                mkdir(dir, 0755);
                *p = '/';
        }
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
                return -1;
        return 0;
}

/* When the custody process will drop to [custody] user, the directories it
 * writes (socket, database) must be its own. */
static int give_dirs_to_custody_user(const struct kw_config *cfg)
{
        if (geteuid() != 0 || cfg->custody.user == NULL || cfg->custody.user[0] == '\0')
                return 0;
        struct passwd *pw = getpwnam(cfg->custody.user);
        if (pw == NULL) {
                fprintf(stderr, "keywardd: [custody] user '%s' does not exist\n", cfg->custody.user);
                return -1;
        }
        const char *paths[] = { cfg->custody.socket_path, cfg->db.path };
        for (size_t i = 0; i < 2; i++) {
                char dir[PATH_MAX];
                snprintf(dir, sizeof dir, "%s", paths[i]);
                char *slash = strrchr(dir, '/');
                if (slash == NULL || slash == dir)
                        continue;
                *slash = '\0';
                if (chown(dir, pw->pw_uid, pw->pw_gid) != 0) {
                        fprintf(stderr, "keywardd: cannot give %s to '%s': %s\n", dir,
                                cfg->custody.user, strerror(errno));
                        return -1;
                }
        }
        return 0;
}

/* ------------------------------------------------------ custody process */

static const char *config_path;
static pid_t custody_pid = -1;
static volatile int stopping;
static pthread_mutex_t custody_mu = PTHREAD_MUTEX_INITIALIZER;

/* Starts the custody process and waits until its socket is ready.
 * Returns 0, or the custody's exit status when it failed to start. */
static int custody_spawn(int wait_ms)
{
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) != 0)
                return 3;
        char fdbuf[16];   /* formatted before fork: the child only execs */
        snprintf(fdbuf, sizeof fdbuf, "%d", pfd[1]);
        pid_t pid = fork();
        if (pid < 0) {
                close(pfd[0]);
                close(pfd[1]);
                return 3;
        }
        if (pid == 0) {
                fcntl(pfd[1], F_SETFD, 0);   /* keep the ready pipe across exec */
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                char *argv[8];
                int n = 0;
                argv[n++] = "keywardd-custody";
                argv[n++] = "--custody";
                argv[n++] = "--ready-fd";
                argv[n++] = fdbuf;
                if (config_path != NULL) {
                        argv[n++] = "--config";
                        argv[n++] = (char *)config_path;
                }
                argv[n] = NULL;
                execv("/proc/self/exe", argv);
                _exit(3);
        }
        close(pfd[1]);
        struct pollfd p = { .fd = pfd[0], .events = POLLIN };
        char b = 0;
        int pr;
        do
                pr = poll(&p, 1, wait_ms);
        while (pr < 0 && errno == EINTR);
        ssize_t got = pr > 0 ? read(pfd[0], &b, 1) : 0;
        close(pfd[0]);
        if (got == 1) {
                custody_pid = pid;
                return 0;
        }
        int st = 0;
        if (pr == 0) {   /* not ready in time */
                kill(pid, SIGKILL);
                kw_log(KW_LOG_ERROR, "custody_start_timeout", KW_END);
        }
        waitpid(pid, &st, 0);
        return WIFEXITED(st) && WEXITSTATUS(st) != 0 ? WEXITSTATUS(st) : 5;
}

/* Restarts the custody process when it dies; the front answers 503
 * (custody_down) meanwhile. */
static void *custody_supervisor(void *arg)
{
        (void)arg;
        unsigned backoff_ms = 100;
        for (;;) {
                int st;
                pid_t pid = waitpid(-1, &st, 0);
                if (pid < 0) {
                        if (errno == EINTR)
                                continue;
                        sleep(1);
                        continue;
                }
                pthread_mutex_lock(&custody_mu);
                if (pid != custody_pid || stopping) {
                        pthread_mutex_unlock(&custody_mu);
                        continue;
                }
                custody_pid = -1;
                char how[48];
                if (WIFSIGNALED(st))
                        snprintf(how, sizeof how, "signal %d", WTERMSIG(st));
                else
                        snprintf(how, sizeof how, "exit %d", WEXITSTATUS(st));
                kw_log(KW_LOG_ERROR, "custody_died", "how", how, KW_END);
                for (;;) {
                        struct timespec ts = { backoff_ms / 1000, (long)(backoff_ms % 1000) * 1000000L };
                        nanosleep(&ts, NULL);
                        if (stopping)
                                break;
                        int rc = custody_spawn(60000);
                        if (rc == 0) {
                                kw_log(KW_LOG_INFO, "custody_restarted", KW_END);
                                backoff_ms = 100;
                                break;
                        }
                        backoff_ms = backoff_ms < 5000 ? backoff_ms * 2 : 5000;
                }
                pthread_mutex_unlock(&custody_mu);
        }
        return NULL;
}

static void custody_stop(void)
{
        pthread_mutex_lock(&custody_mu);
        stopping = 1;
        pid_t pid = custody_pid;
        pthread_mutex_unlock(&custody_mu);
        if (pid > 0) {
                kill(pid, SIGTERM);
                for (int i = 0; i < 100; i++) {   /* up to 10 s for the audit flush */
                        if (kill(pid, 0) != 0)
                                break;
                        usleep(100000);
                }
                kill(pid, SIGKILL);
        }
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, 'k' },
                { "custody", no_argument, NULL, 'C' },
                { "ready-fd", required_argument, NULL, 'r' },
                { "version", no_argument, NULL, 'V' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        int check_only = 0, custody = 0, ready_fd = -1, o;
        while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
                switch (o) {
                case 'c': config_path = optarg; break;
                case 'k': check_only = 1; break;
                case 'C': custody = 1; break;
                case 'r': ready_fd = atoi(optarg); break;
                case 'V': printf("keywardd %s\n", KEYWARD_VERSION); return 0;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (optind != argc) {
                usage(stderr);
                return 2;
        }
        const char *path = config_path;
        if (path == NULL && access(KW_CONFIG_DEFAULT_PATH, F_OK) == 0)
                path = config_path = KW_CONFIG_DEFAULT_PATH;
        struct kw_config *cfg = NULL;
        kw_result r = kw_config_load(path, NULL, &cfg);
        if (r.code != 0) {
                fprintf(stderr, "keywardd: %s\n", kw_err_detail()[0] ? kw_err_detail() : kw_strerror(r.code));
                return 2;
        }
        if (custody) {
                int rc = kw_custody_main(cfg, ready_fd);
                kw_config_free(cfg);
                return rc;
        }
        if (check_files(cfg) != 0) {
                kw_config_free(cfg);
                return 2;
        }
        if (cfg->ekm.azure_ekm_enable && kw_route_ekm_setup(cfg).code != 0) {
                fprintf(stderr, "keywardd: %s\n", kw_err_detail());
                kw_config_free(cfg);
                return 2;
        }
        if (kw_route_xks_setup(cfg).code != 0) {
                fprintf(stderr, "keywardd: %s\n", kw_err_detail());
                kw_config_free(cfg);
                return 2;
        }
        if (check_only) {
                printf("keywardd: configuration OK (%s)\n", cfg->source);
                kw_config_free(cfg);
                return 0;
        }
        kw_log_setup((enum kw_log_level)kw_log_level_parse(cfg->log.level), "front");
        if (cfg->ekm.azure_ekm_disable_client_auth)
                kw_log(KW_LOG_WARN, "insecure_setting",
                       "message", "azure_ekm_disable_client_auth is set: EKM requests are NOT "
                                  "authenticated; use this for tests only", KW_END);

        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);

        if (mkdir_parent(cfg->custody.socket_path) != 0 || mkdir_parent(cfg->db.path) != 0) {
                fprintf(stderr, "keywardd: cannot create the directories of %s / %s: %s\n",
                        cfg->custody.socket_path, cfg->db.path, strerror(errno));
                return 3;
        }
        if (give_dirs_to_custody_user(cfg) != 0)
                return 3;
        int rc = custody_spawn(60000);
        if (rc != 0) {
                fprintf(stderr, "keywardd: the custody process failed to start (exit %d); see the "
                                "log line above\n", rc);
                return rc;
        }
        /* the SigV4 secrets are the custody's (it reads them from the file,
         * also when restarted): none stays in the network-facing process */
        kw_xks_wipe_config_secrets(cfg);
        pthread_t sup;
        pthread_create(&sup, NULL, custody_supervisor, NULL);
        pthread_detach(sup);

        struct kw_front front = { .cfg = cfg };
        r = kw_cc_new(cfg->custody.socket_path, (unsigned)cfg->custody.connections,
                      (unsigned)cfg->custody.timeout_ms, &front.cc);
        const struct kw_route *routes = build_routes(cfg);
        int split = cfg->admin.listen && cfg->admin.listen[0] &&
                    strcmp(cfg->admin.listen, cfg->http.listen) != 0;
        if (r.code == 0)
                r = kw_http_start(cfg, routes, &front, &front.http);
        if (r.code != 0) {
                fprintf(stderr, "keywardd: cannot start HTTPS: %s\n",
                        kw_err_detail()[0] ? kw_err_detail() : kw_strerror(r.code));
                custody_stop();
                return 3;
        }
        char url[300], admin_url[300];
        snprintf(url, sizeof url, "https://%s", cfg->http.listen);
        snprintf(admin_url, sizeof admin_url, "https://%s", split ? cfg->admin.listen : cfg->http.listen);
        kw_log(KW_LOG_INFO, "ready", "url", url, "admin_url", cfg->admin.enable ? admin_url : NULL,
               "version", KEYWARD_VERSION, KW_END);

        int sig = 0;
        sigwait(&set, &sig);
        kw_log(KW_LOG_INFO, "stopping", KW_END);
        kw_http_stop(front.http);
        custody_stop();
        kw_cc_free(front.cc);
        kw_config_free(cfg);
        return 0;
}
