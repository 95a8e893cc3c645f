"""Plugins: the pluggy hook specifications (``hookspecs``), the frozen spec classes plugins
register (``specs``), discovery and the registry of what loaded (``registry``), the
``name[key=value]`` selection syntax resolved against it (``selection``), and the data files
dataset plugins declare: where they live, their checksums, fetching (``data_files``)."""
