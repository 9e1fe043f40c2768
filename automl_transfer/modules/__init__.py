"""Pre-trained embedding modules: the registry, TF-Hub loading and the offline builders."""
