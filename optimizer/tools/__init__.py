"""What users run around the search: check (a mapping against the optimum), explore (hardware
co-exploration), export (Megatron-LM, DeepSpeed, trace), pictures, and the `meshmap` command line."""
