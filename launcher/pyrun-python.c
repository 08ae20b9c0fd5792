/*
 * pyrun-python: the interpreter named in pyrun's console script
 * (#!<venv>/bin/pyrun-python -IS).  It runs the `python3` beside it, exec'd
 * through a detached read-only clone of that file's mount (open_tree +
 * mount_setattr + execveat), so that the exe of every pyrun process, and of
 * the container processes forked from it, can never be opened for writing
 * (CVE-2019-5736 class: /proc/<pid>/exe, `#!/proc/self/exe`).
 *
 * One exec of this small static program costs far less than a second
 * interpreter start, which is what pyrun.selfexe pays when it has to do the
 * same from Python.  Where the clone is refused (rootless, old kernels), or
 * PYRUN_EXE_COPY=memfd asks for it, python3 is exec'd as is and
 * pyrun.selfexe falls back to a sealed memfd copy.
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

int main(int argc, char **argv, char **envp)
{
	static char python[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", python, sizeof(python) - sizeof("python3"));
	char *slash;
	const char *force = getenv("PYRUN_EXE_COPY");

	(void)argc;
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

	if (force == NULL || strcmp(force, "memfd") != 0) {
		int fd = (int)syscall(SYS_open_tree, AT_FDCWD, python, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
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
