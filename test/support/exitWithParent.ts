// Imported first by the helper scripts that tests start as processes (appender, tailer): the
// script exits as soon as the test process that started it is gone, however that ended (SIGKILL
// included, when nothing in the test process can run), so a killed test run leaves no writer or
// reader behind. Its parent pid changes when it is re-parented; checked four times a second.

const parent = process.ppid
setInterval(() => {
  if (process.ppid !== parent) process.exit(1)
}, 250).unref()
