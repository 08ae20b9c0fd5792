/*
 * pyrun-python: the interpreter named in pyrun's console script
 * (#!<venv>/bin/pyrun-python -IS).  It runs the `python3` beside it, exec'd
 * (execveat) from a read-only handle on that file, so that the exe of every
 * pyrun process, and of the container processes forked from it, can never
 * be opened for writing (CVE-2019-5736 class: /proc/<pid>/exe,
 * `#!/proc/self/exe`).  The handle, first that works:
 *
 * - the file inside a private read-only overlayfs (fsopen) whose layers are
 *   the file's directory and an empty detached tmpfs (runc 1.4's choice):
 *   the exe is an overlay inode, never the host file's, and an overlay with
 *   no upper layer refuses writes in its superblock, not only by a mount
 *   flag.  The dummy layer has no name anywhere, so it is empty, out of
 *   every container's reach and gone with the last process using it; many
 *   concurrent commands share nothing.  Older kernels (before 6.15) refuse
 *   a detached mount as a layer;
 * - a detached read-only clone of the file's mount (open_tree +
 *   mount_setattr);
 * - neither (rootless, old kernels): python3 is exec'd as is and
 *   pyrun.selfexe re-executes from a sealed memfd copy.
 *
 * PYRUN_EXE_COPY=clone skips the overlay, =memfd both (tests, hosts that
 * refuse them).  One exec of this small static program costs far less than
 * a second interpreter start, which is what pyrun.selfexe pays when it has
 * to do the same from Python.
 *
 * The clone is made only where a command may put one of its processes in a
 * container: not for the commands that never fork into one (state, start,
 * kill, delete...), whose start-up would otherwise pay for the clone's
 * teardown at exec (an expedited RCU grace period: ~1.5 ms, 4-5 ms on a
 * loaded host).  The command word is found as pyrun.selfexe.command_of
 * finds it; after the real parse, pyrun.cli.main re-checks create/run/exec
 * (pyrun.selfexe.ensure), so a misjudged command costs a second interpreter
 * start, never the protection.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/mount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_fsopen
#define SYS_fsopen 430
#define SYS_fsconfig 431
#define SYS_fsmount 432
#endif
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x1
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#define FSMOUNT_CLOEXEC 0x1
#endif

/* Global flags that take a value (pyrun.selfexe._VALUED). */
static const char *const valued[] = {"root", "log", "log-format", "rootless", "criu", NULL};
/* Commands that never fork into a container; "" is no command (--version, --help). */
static const char *const outside[] = {"", "help", "h", "state", "list", "start", "kill", "delete",
				      "pause", "resume", "events", "ps", "update", "spec", "features", NULL};

static int listed(const char *word, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(word, *list) == 0)
			return 1;
	return 0;
}

/* Whether argv is the console script's (<us> -IS <script> args...) for a
 * command listed in `outside`; anything else is protected. */
static int stays_outside(int argc, char **argv)
{
	int i = 3;

	if (argc < 3 || strcmp(argv[1], "-IS") != 0 || argv[2][0] == '-')
		return 0;
	while (i < argc) {
		const char *arg = argv[i];
		if (arg[0] != '-' || strcmp(arg, "-") == 0)
			return listed(arg, outside);
		while (*arg == '-')
			arg++;
		if (strchr(arg, '=') == NULL && listed(arg, valued))
			i++;
		i++;
	}
	return listed("", outside);
}

/* A new detached mount of filesystem `type` (options: name, value pairs,
 * NULL-terminated; a refused option fails it unless its name starts with
 * '?'), or -1. */
static int new_mount(const char *type, const char *const *options, unsigned int attrs)
{
	int ctx = (int)syscall(SYS_fsopen, type, FSOPEN_CLOEXEC), mnt = -1;

	if (ctx < 0)
		return -1;
	for (; options[0] != NULL; options += 2) {
		const char *name = options[0][0] == '?' ? options[0] + 1 : options[0];
		if (syscall(SYS_fsconfig, ctx, FSCONFIG_SET_STRING, name, options[1], 0) < 0 && name == options[0])
			goto out;
	}
	if (syscall(SYS_fsconfig, ctx, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
		mnt = (int)syscall(SYS_fsmount, ctx, FSMOUNT_CLOEXEC, attrs);
out:
	close(ctx);
	return mnt;
}

/* An O_PATH fd on `path` (absolute, no symlink) inside a read-only overlayfs
 * of its directory over an empty detached tmpfs, or -1. */
static int sealed_overlay(const char *path)
{
	static char lower[2 * PATH_MAX + 32];
	const char *name = strrchr(path, '/') + 1, *p;
	char *out = lower;
	int dummy, ovl, fd = -1;

	for (p = path; p < name; p++) {		/* overlayfs: ':' separates layers, '\\' escapes */
		if (*p == ':' || *p == '\\')
			*out++ = '\\';
		*out++ = *p;
	}
	dummy = new_mount("tmpfs", (const char *const[]){NULL}, MOUNT_ATTR_RDONLY);
	if (dummy < 0)
		return -1;
	snprintf(out, lower + sizeof(lower) - out, ":/proc/self/fd/%d", dummy);
	ovl = new_mount("overlay", (const char *const[]){"lowerdir", lower, "?xino", "off", NULL},
			MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID);
	close(dummy);
	if (ovl >= 0) {
		fd = openat(ovl, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		close(ovl);
	}
	return fd;
}

int main(int argc, char **argv, char **envp)
{
	static char python[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", python, sizeof(python) - sizeof("python3"));
	char *slash;
	const char *force = getenv("PYRUN_EXE_COPY");

	if (n <= 0 || (size_t)n >= sizeof(python) - sizeof("python3")) {
		perror("pyrun-python: /proc/self/exe");
		return 127;
	}
	python[n] = '\0';
	slash = strrchr(python, '/');
	if (slash == NULL) {
		fprintf(stderr, "pyrun-python: cannot locate python3 beside %s\n", python);
		return 127;
	}
	strcpy(slash + 1, "python3");
	argv[0] = python;

	if ((force == NULL || strcmp(force, "memfd") != 0) && !stays_outside(argc, argv)) {
		static char real[PATH_MAX];
		int fd = -1;

		if ((force == NULL || strcmp(force, "clone") != 0) && realpath(python, real) != NULL
		    && (fd = sealed_overlay(real)) >= 0) {
			syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
			close(fd);
		}
		fd = (int)syscall(SYS_open_tree, AT_FDCWD, python, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
		if (fd >= 0) {
			struct mount_attr attr = {
				.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
			};
			if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) == 0)
				syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
			close(fd);
		}
	}
	execve(python, argv, envp);
	fprintf(stderr, "pyrun-python: exec %s: %s\n", python, strerror(errno));
	return 127;
}
