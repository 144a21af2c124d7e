"""Administration over SSH: command shell, Python manhole, loopback telnet manhole."""
