// SPDX-License-Identifier: MIT
/* The UFFDIO_API handshake and the record of what was agreed. */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <faultline/uffd.h>

static int handshake(int fd, uint64_t features, uint64_t *got_features,
		     uint64_t *got_ioctls)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };

	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return -errno;
	if (got_features)
		*got_features = api.features;
	if (got_ioctls)
		*got_ioctls = api.ioctls;
	return 0;
}

int fl_uffd_probe(unsigned open_flags, uint64_t *features, uint64_t *ioctls)
{
	int fd = fl_uffd_open(open_flags);
	int ret;

	if (fd < 0)
		return fd;
	ret = handshake(fd, 0, features, ioctls);
	if (ret == 0 && features && (*features & UFFD_FEATURE_EVENT_EXIT)) {
		struct fl_uffd_series s;

		/* bit 17 is used by other series in flight: trust only the proof */
		if (fl_uffd_series_read(fd, &s) < 0 || !s.exit_event)
			*features &= ~(uint64_t)UFFD_FEATURE_EVENT_EXIT;
	}
	close(fd);
	return ret;
}

/*
 * UFFDIO_API may succeed only once per fd, and asking for a feature the
 * kernel lacks fails the call. So: learn the offer on a throwaway fd, then
 * ask for exactly the part of `want` that is offered on the real one.
 */
int fl_uffd_create(struct fl_uffd *u, unsigned open_flags, uint64_t want,
		   uint64_t need, uint64_t *missing)
{
	uint64_t offered = 0, ioctls = 0, ask;
	int fd, ret;

	memset(u, 0, sizeof(*u));
	u->fd = -1;
	if (missing)
		*missing = 0;
	ret = fl_uffd_probe(open_flags, &offered, NULL);
	if (ret < 0)
		return ret;
	if ((need & offered) != need) {
		if (missing)
			*missing = need & ~offered;
		return -EOPNOTSUPP;
	}
	ask = (want | need) & offered;
	fd = fl_uffd_open(open_flags);
	if (fd < 0)
		return fd;
	ret = handshake(fd, ask, NULL, &ioctls);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	u->fd = fd;
	u->features = ask;
	u->kernel_features = offered;
	u->ioctls = ioctls;
	u->open_flags = open_flags;
	return 0;
}

void fl_uffd_adopt(struct fl_uffd *u, int fd, uint64_t features)
{
	memset(u, 0, sizeof(*u));
	u->fd = fd;
	u->features = features;
}

void fl_uffd_close(struct fl_uffd *u)
{
	if (!u)
		return;
	if (u->fd >= 0)
		close(u->fd);
	memset(u, 0, sizeof(*u));
	u->fd = -1;
}
