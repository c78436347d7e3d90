"""Bayesian theory models across architectures (THEORY.md section 8).

``table`` builds the tidy (model x context) table from a sweep and the quantities
at initialisation; ``models`` holds the theories over it, one file each
(M_universal, M_hier, M_class and the sharpness baseline), and their registry;
``fit`` samples them (nutpie when installed, PyMC's NUTS otherwise) behind a
diagnostics gate; ``compare`` scores them by PSIS-LOO and exact
leave-one-architecture-out; ``predict`` makes and scores blind predictions;
``simulate`` draws tables from each theory's generative process with known
parameters, for validation.
"""
