"""DCC-side client for the colorprop server. Imports only the standard library, numpy and pyzmq."""
