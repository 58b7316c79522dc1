/*
 * cli.h - the subcommands of keyward-provision beyond main.c's own.
 */
#ifndef KWP_CLI_H
#define KWP_CLI_H

int kwp_cli_run(int argc, char **argv);
int kwp_cli_check(int argc, char **argv);

#endif
