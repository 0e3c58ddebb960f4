"""gkcp: KCP reliable UDP for gevent, wire-compatible with kcp-go."""
