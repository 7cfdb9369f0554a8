"""Facts about Paddy Doctor: the layout, the labels, the varieties and their counts."""

COMPETITION = "paddy-disease-classification"
KAGGLE_INPUT = "/kaggle/input"  # where a Kaggle kernel finds its competition and datasets
TRAIN_CSV = "train.csv"
SAMPLE_SUBMISSION_CSV = "sample_submission.csv"
TRAIN_IMAGES = "train_images"
TEST_IMAGES = "test_images"
TRAIN_COLUMNS = ("image_id", "label", "variety", "age")
SUBMISSION_COLUMNS = ("image_id", "label")
FIRST_TRAIN_ID = 100000
FIRST_TEST_ID = 200001
IMAGE_SIZE = (480, 640)  # width x height: the photos are portrait

# Counts in the real training set, largest first; samples keep these proportions.
LABEL_COUNTS = {
    "normal": 1764,
    "blast": 1738,
    "hispa": 1594,
    "dead_heart": 1442,
    "tungro": 1088,
    "brown_spot": 965,
    "downy_mildew": 620,
    "bacterial_leaf_blight": 479,
    "bacterial_leaf_streak": 380,
    "bacterial_panicle_blight": 337,
}
VARIETY_COUNTS = {
    "ADT45": 6992,
    "KarnatakaPonni": 988,
    "Ponni": 657,
    "AtchayaPonni": 461,
    "Zonal": 399,
    "AndraPonni": 377,
    "Onthanel": 351,
    "IR20": 114,
    "RR": 36,
    "Surya": 32,
}
AGES = (45, 47, 50, 55, 57, 60, 62, 65, 66, 67, 68, 70, 72, 73, 75, 77, 80, 82)
N_TRAIN = 10407
N_TEST = 3469
