# placeholder until the data helper writes the registry
DATASETS = {"mnist": None}
