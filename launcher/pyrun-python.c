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
