"""The three networks: F_w (local_net), F_s (global_net), F_f (fusion_net). Stateless modules."""
