"""The model: the two-tower network (``two_tower``), the transform's features as the model reads them
(``features``), how a customer's history is pooled into a vector (``aggregation``) and the popularity
prior every served score adds (``popularity``)."""
