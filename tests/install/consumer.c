// SPDX-License-Identifier: MIT
/*
 * A program that uses libfaultline as an outsider would: installed headers,
 * flags from pkg-config, nothing from the source tree. It opens a
 * userfaultfd, says what the kernel offers, reads a page through an
 * in-memory page source, builds a monitor over that source, and frees it
 * all. Exit 0 when all worked, 77 when this machine has no userfaultfd
 * for us (the test reports a skip), 1 otherwise.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <faultline/monitor.h>
#include <faultline/source.h>
#include <faultline/uffd.h>

static void done(struct fl_source_req *req, void *arg)
{
	*(struct fl_source_req **)arg = req;
}

int main(void)
{
	static unsigned char page[4096];
	const void *data[1] = { page };
	struct fl_region region = { .start = 0x10000000, .len = sizeof(page), .page_size = 4096 };
	struct fl_source_req req = { .region = 0, .offset = 0, .len = 4096, .urgent = true };
	struct fl_source_req *back = NULL;
	struct fl_source *src = NULL;
	struct fl_monitor *mon = NULL;
	struct fl_monitor_opts mo = { .verbose = 0 };
	uint64_t features, ioctls;
	struct fl_uffd u;
	char err[256];
	int ret;

	/* User-mode-only: needs no privilege on 5.11+ kernels. */
	ret = fl_uffd_probe(FL_UFFD_USER_MODE_ONLY, &features, &ioctls);
	if (ret) {
		printf("consumer: no userfaultfd here: %s\n", strerror(-ret));
		return 77;
	}
	ret = fl_uffd_create(&u, FL_UFFD_USER_MODE_ONLY, UFFD_FEATURE_THREAD_ID, 0, NULL);
	if (ret) {
		printf("consumer: fl_uffd_create: %s\n", strerror(-ret));
		return 1;
	}
	printf("consumer: userfaultfd %d, %zu features known to libfaultline:",
	       u.fd, fl_uffd_feature_count);
	for (size_t i = 0; i < fl_uffd_feature_count; i++)
		if (features & fl_uffd_feature_names[i].bit)
			printf(" %s", fl_uffd_feature_names[i].name);
	printf("\n");
	fl_uffd_close(&u);

	memset(page, 0x5a, sizeof(page));
	ret = fl_source_memory_create(&src, &region, 1, data);
	if (ret) {
		printf("consumer: fl_source_memory_create: %s\n", strerror(-ret));
		return 1;
	}
	ret = fl_source_submit(src, &req);
	if (!ret)
		ret = fl_source_flush(src);
	if (!ret && fl_source_reap(src, done, &back) != 1)
		ret = -EIO;
	if (ret || back != &req || req.result || memcmp(req.data, page, sizeof(page))) {
		printf("consumer: reading a page through the memory source failed (%d)\n", ret);
		fl_source_destroy(src);
		return 1;
	}
	fl_source_release(src, &req);

	ret = fl_monitor_create(&mon, src, &mo, err, sizeof(err));
	if (ret) {
		printf("consumer: fl_monitor_create: %s\n", err);
		fl_source_destroy(src);
		return 1;
	}
	fl_monitor_destroy(mon);
	fl_source_destroy(src);
	printf("consumer: ok\n");
	return 0;
}
