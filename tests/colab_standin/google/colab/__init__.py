"""A stand-in for Colab's `google.colab` package, for the tests only: Colab imports it before the first cell,
and the notebook takes its Colab branch when it finds it in `sys.modules`."""
