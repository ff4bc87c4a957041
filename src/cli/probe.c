// SPDX-License-Identifier: MIT
/* `faultline probe`: what this kernel and this process can do. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <faultline/uffd.h>

#include "cli.h"
#include "util/json-writer.h"

/* The range ioctls the kernel allows for one memory type. */
struct range_probe {
	const char *memory;
	uint64_t modes;
	int err;	/* 0, or why it could not be registered */
	uint64_t ioctls;
};

struct hugepages {
	long total, free; /* 2 MiB pages, -1 if unknown */
	char thp[64];	  /* transparent_hugepage/enabled */
};

struct kvm_probe {
	bool present;
	int err; /* opening or KVM_CREATE_VM */
	int api_version;
};

struct probe {
	struct utsname uts;
	int uffd_err;
	uint64_t features, ioctls;
	bool pagemap_scan, pinned;
	struct fl_uffd_series series;
	int series_err;
	bool exit_bit_unproven; /* bit 17 offered without the series' proof */
	struct range_probe ranges[3];
	struct fl_uffd_privilege priv;
	struct hugepages huge;
	struct kvm_probe kvm;
};

static long read_long(const char *path)
{
	FILE *f = fopen(path, "re");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static void read_thp(char *buf, size_t len)
{
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");

	snprintf(buf, len, "unknown");
	if (f) {
		if (fgets(buf, (int)len, f))
			buf[strcspn(buf, "\n")] = 0;
		fclose(f);
	}
}

static void *map_memory(const char *memory, size_t len)
{
	int fd = -1;
	void *p;

	if (!strcmp(memory, "anonymous"))
		return mmap(NULL, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fd = memfd_create("faultline-probe",
			  !strcmp(memory, "hugetlb") ? MFD_HUGETLB : 0);
	if (fd < 0)
		return MAP_FAILED;
	if (ftruncate(fd, (off_t)len) < 0) {
		close(fd);
		return MAP_FAILED;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		 fd, 0);
	close(fd);
	return p;
}

static void probe_range(struct range_probe *r, uint64_t features)
{
	size_t len = 2UL << 20;
	struct fl_uffd u;
	void *p;

	r->err = fl_uffd_create(&u, 0, features, 0, NULL);
	if (r->err < 0)
		return;
	p = map_memory(r->memory, len);
	if (p == MAP_FAILED) {
		r->err = -errno;
	} else {
		r->err = fl_uffd_register(u.fd, (uint64_t)(uintptr_t)p, len,
					  r->modes, &r->ioctls);
		munmap(p, len);
	}
	fl_uffd_close(&u);
}

static void probe_kvm(struct kvm_probe *k)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm;

	k->present = access("/dev/kvm", F_OK) == 0;
	if (fd < 0) {
		k->err = -errno;
		return;
	}
	k->api_version = ioctl(fd, KVM_GET_API_VERSION, 0);
	vm = ioctl(fd, KVM_CREATE_VM, 0);
	k->err = vm < 0 ? -errno : 0;
	if (vm >= 0)
		close(vm);
	close(fd);
}

static void gather(struct probe *p)
{
	static const struct range_probe ranges[] = {
		{ "anonymous", UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP, 0, 0 },
		{ "shmem", UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP |
				   UFFDIO_REGISTER_MODE_MINOR, 0, 0 },
		{ "hugetlb", UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP |
				     UFFDIO_REGISTER_MODE_MINOR, 0, 0 },
	};

	memset(p, 0, sizeof(*p));
	uname(&p->uts);
	p->uffd_err = fl_uffd_probe(0, &p->features, &p->ioctls);
	if (p->uffd_err < 0)
		p->uffd_err = fl_uffd_probe(FL_UFFD_USER_MODE_ONLY, &p->features,
					    &p->ioctls);
	p->pagemap_scan = fl_dirty_scan_supported();
	p->pinned = fl_dirty_pinned_supported();
	p->series_err = fl_uffd_series_probe(&p->series);
	if (p->uffd_err == 0 && !(p->features & UFFD_FEATURE_EVENT_EXIT)) {
		struct uffdio_api api = { .api = UFFD_API };
		int fd = fl_uffd_open(FL_UFFD_USER_MODE_ONLY);

		/* fl_uffd_probe hides an unproven bit 17: say so if it did */
		if (fd >= 0 && ioctl(fd, UFFDIO_API, &api) == 0)
			p->exit_bit_unproven = api.features & UFFD_FEATURE_EVENT_EXIT;
		if (fd >= 0)
			close(fd);
	}
	for (size_t i = 0; i < 3; i++) {
		p->ranges[i] = ranges[i];
		if (p->uffd_err == 0)
			probe_range(&p->ranges[i], p->features &
				    (UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MISSING_HUGETLBFS |
				     UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_MINOR_HUGETLBFS |
				     UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_PAGEFAULT_FLAG_WP));
	}
	fl_uffd_privilege_check(&p->priv);
	p->huge.total = read_long("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages");
	p->huge.free = read_long("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
	read_thp(p->huge.thp, sizeof(p->huge.thp));
	probe_kvm(&p->kvm);
}

static void ioctl_list(FILE *out, uint64_t mask)
{
	bool first = true;

	for (size_t i = 0; i < fl_uffd_ioctl_count; i++) {
		if (!(mask & fl_uffd_ioctl_names[i].bit))
			continue;
		fprintf(out, "%s%s", first ? "" : " ", fl_uffd_ioctl_names[i].name + 7);
		first = false;
	}
	fputc('\n', out);
}

static void print_text(const struct probe *p, FILE *out)
{
	fprintf(out, "kernel: %s %s %s\n", p->uts.sysname, p->uts.release, p->uts.machine);
	if (p->uffd_err < 0) {
		fprintf(out, "userfaultfd: unavailable: %s\n", strerror(-p->uffd_err));
	} else {
		fprintf(out, "userfaultfd features:\n");
		for (size_t i = 0; i < fl_uffd_feature_count; i++) {
			const struct fl_uffd_bit_name *f = &fl_uffd_feature_names[i];

			fprintf(out, "  %-3s %-33s %-5s %s\n",
				(p->features & f->bit) ? "yes" : "no", f->name, f->since, f->what);
		}
		fprintf(out, "userfaultfd ioctls: ");
		ioctl_list(out, p->ioctls);
		for (size_t i = 0; i < 3; i++) {
			const struct range_probe *r = &p->ranges[i];

			fprintf(out, "  range ioctls, %-10s ", r->memory);
			if (r->err)
				fprintf(out, "(not registrable: %s)\n", strerror(-r->err));
			else
				ioctl_list(out, r->ioctls);
		}
	}
	fprintf(out, "PAGEMAP_SCAN dirty tracking: %s\n",
		p->pagemap_scan ? "yes (WP_ASYNC + PAGEMAP_SCAN)" :
				  "no (falls back to synchronous write-protect faults)");
	fprintf(out, "kernel patches (src/kernel-patches):\n");
	/* a series feature is used only on proof: the fdinfo lines it adds */
	if (p->features & UFFD_FEATURE_EVENT_EXIT)
		fprintf(out, "  exit event:      yes, proven by %s\n", p->series.exit_proof);
	else if (p->exit_bit_unproven)
		fprintf(out, "  exit event:      no: the kernel offers bit 17 but not the series' "
			"proof (%s): not used; exits are found with pidfds, ESRCH and a liveness probe\n",
			p->series.exit_proof[0] ? p->series.exit_proof : "no 'exit_event:' line in fdinfo");
	else
		fprintf(out, "  exit event:      no: exits are found with pidfds, ESRCH and a liveness probe\n");
	fprintf(out, "  pinned pages:    %s\n", p->pinned ?
		"yes, proven by fdinfo 'wp_async_pinned: 1': a DMA-pinned page stays dirty while pinned and once after" :
		"no ('wp_async_pinned' absent from fdinfo): declare pinned ranges with fl_dirty_always() (DMA writes never fault)");
	fprintf(out, "  fork pid:        %s\n", p->series.fork_pid ?
		"yes, proven by fdinfo 'fork_pid: 1': UFFD_EVENT_FORK names the child" :
		"no ('fork_pid' absent from fdinfo): a fork child comes without a pid");
	fprintf(out, "privileges:\n");
	fl_uffd_privilege_explain(&p->priv, out);
	fprintf(out, "huge pages (2 MiB): %ld reserved, %ld free%s; THP: %s\n",
		p->huge.total, p->huge.free,
		p->huge.free > 0 ? "" : " (hugetlb tests skip; reserve with: sysctl vm.nr_hugepages=64)",
		p->huge.thp);
	if (!p->kvm.present)
		fprintf(out, "KVM: no (/dev/kvm absent)\n");
	else if (p->kvm.err)
		fprintf(out, "KVM: not usable: %s\n", strerror(-p->kvm.err));
	else
		fprintf(out, "KVM: yes (API version %d)\n", p->kvm.api_version);
}

static void json_bits(struct fl__json *j, const char *key, uint64_t mask,
		      const struct fl_uffd_bit_name *t, size_t n)
{
	fl__json_object(j, key);
	for (size_t i = 0; i < n; i++)
		fl__json_bool(j, t[i].name, mask & t[i].bit);
	fl__json_close(j);
}

/* 0, or CLI_FAILED with the writer's error told. */
static int print_json(const struct probe *p, FILE *out)
{
	struct fl__json j;

	fl__json_begin(&j, out, FL__JSON_PRETTY);
	fl__json_object(&j, "kernel");
	fl__json_str(&j, "sysname", p->uts.sysname);
	fl__json_str(&j, "release", p->uts.release);
	fl__json_str(&j, "machine", p->uts.machine);
	fl__json_close(&j);
	fl__json_object(&j, "userfaultfd");
	fl__json_bool(&j, "available", p->uffd_err == 0);
	if (p->uffd_err)
		fl__json_str(&j, "error", strerror(-p->uffd_err));
	json_bits(&j, "features", p->features, fl_uffd_feature_names, fl_uffd_feature_count);
	json_bits(&j, "ioctls", p->ioctls, fl_uffd_ioctl_names, fl_uffd_ioctl_count);
	fl__json_object(&j, "range_ioctls");
	for (size_t i = 0; i < 3; i++) {
		const struct range_probe *r = &p->ranges[i];

		if (r->err) {
			fl__json_object(&j, r->memory);
			fl__json_str(&j, "error", strerror(-r->err));
			fl__json_close(&j);
		} else {
			json_bits(&j, r->memory, r->ioctls, fl_uffd_ioctl_names,
				  fl_uffd_ioctl_count);
		}
	}
	fl__json_close(&j);
	fl__json_bool(&j, "pagemap_scan", p->pagemap_scan);
	fl__json_close(&j);
	fl__json_object(&j, "kernel_patches");
	fl__json_bool(&j, "event_exit", p->features & UFFD_FEATURE_EVENT_EXIT);
	fl__json_bool(&j, "pinned_pages_stay_dirty", p->pinned);
	fl__json_bool(&j, "fork_pid", p->series.fork_pid);
	fl__json_bool(&j, "event_exit_bit_unproven", p->exit_bit_unproven);
	fl__json_close(&j);
	fl__json_object(&j, "privileges");
	fl__json_bool(&j, "cap_sys_ptrace", p->priv.cap_sys_ptrace);
	fl__json_int(&j, "unprivileged_userfaultfd", p->priv.unprivileged_sysctl);
	fl__json_bool(&j, "dev_userfaultfd", p->priv.dev_userfaultfd);
	fl__json_bool(&j, "dev_userfaultfd_rw", p->priv.dev_userfaultfd_rw);
	fl__json_bool(&j, "kernel_faults", p->priv.kernel_faults);
	fl__json_bool(&j, "user_faults", p->priv.user_faults);
	fl__json_bool(&j, "event_fork", p->priv.event_fork);
	fl__json_close(&j);
	fl__json_object(&j, "hugepages");
	fl__json_int(&j, "size_kib", 2048);
	fl__json_int(&j, "total", p->huge.total);
	fl__json_int(&j, "free", p->huge.free);
	fl__json_str(&j, "thp", p->huge.thp);
	fl__json_close(&j);
	fl__json_object(&j, "kvm");
	fl__json_bool(&j, "present", p->kvm.present);
	fl__json_bool(&j, "usable", p->kvm.present && !p->kvm.err);
	if (p->kvm.err)
		fl__json_str(&j, "error", strerror(-p->kvm.err));
	else
		fl__json_int(&j, "api_version", p->kvm.api_version);
	fl__json_close(&j);
	if (fl__json_end(&j)) {
		fprintf(stderr, "faultline probe: --json: %s\n", fl__json_error(&j));
		return CLI_FAILED;
	}
	return CLI_OK;
}

int cmd_probe(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false;
	struct probe p;
	int c;

	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			printf("usage: faultline probe [--json]\n"
			       "Print the kernel's userfaultfd features and ioctls, this process's\n"
			       "privileges, huge page availability and whether KVM is usable.\n");
			return 0;
		default:
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "faultline probe: unexpected argument '%s'\n", argv[optind]);
		return CLI_USAGE;
	}
	gather(&p);
	if (json)
		return print_json(&p, stdout);
	print_text(&p, stdout);
	return 0;
}
