"""etcd v3 as the lease arbiter: a sans-IO core (L{arbiter}), its messages (L{codec}), and the
Twisted shell that talks to etcd's JSON gateway (L{client})."""
