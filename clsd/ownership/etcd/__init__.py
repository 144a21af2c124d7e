"""etcd v3 as the lease arbiter: a sans-IO core (L{core.arbiter}), its actions and the
gateway's messages (L{core.actions}, L{core.codec}), and the Twisted shell that talks to etcd's
JSON gateway (L{client})."""
