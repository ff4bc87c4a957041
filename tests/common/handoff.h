/* SPDX-License-Identifier: MIT */
/* Tests that need a userfaultfd of another process: a child creates it,
 * registers its own memory and sends us the fd over a socketpair. */
#ifndef FL_TEST_HANDOFF_H
#define FL_TEST_HANDOFF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

int send_fd(int sock, int fd, const void *data, size_t len);
int recv_fd(int sock, int *fd, void *data, size_t len);
/* Write / read exactly len bytes (asserting). */
void send_all(int sock, const void *data, size_t len);
void recv_all(int sock, void *data, size_t len);

#endif
